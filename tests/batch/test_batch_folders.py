"""Folder batches: every image becomes a file, the manifest is true of the disk, reruns skip, bad files fail alone."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from neural_collages.batch import compress_folder, decompress_folder, make_engine, read_manifest
from neural_collages.batch.folders import find_inputs
from neural_collages.batch.manifest import MANIFEST_NAME, file_sha256
from neural_collages.batch.tasks import EncodeSettings
from neural_collages.codecs import compress, decompress
from neural_collages.errors import CollageError, ConfigurationError, MissingDependencyError
from neural_collages.imaging.io import load_image, load_image_bytes
from neural_collages.imaging.metrics import psnr

from batch_helpers import make_folder

SRC = Path(__file__).resolve().parents[2] / "src"
FAST = EncodeSettings("pifs", 1)


@pytest.fixture(scope="module")
def cluster():
    """One two-process LocalCluster for the module (starting one takes a second or two)."""
    with make_engine(workers=2) as engine:
        yield engine


def _manifest_lines(dst: Path) -> list[dict]:
    return [json.loads(line) for line in (dst / MANIFEST_NAME).read_text().splitlines()]


@pytest.mark.slow
def test_local_cluster_compresses_a_folder_and_reports_the_one_corrupt_image(tmp_path, cluster):
    src, dst = tmp_path / "src", tmp_path / "dst"
    names = make_folder(src, n=4, corrupt=("sub/broken.png",))
    summary = compress_folder(src, dst, FAST, cluster, progress=False)
    assert (summary.total, summary.done, summary.failed, summary.skipped) == (5, 4, 1, 0)
    assert summary.failures[0][0] == "sub/broken.png" and "cannot read image" in summary.failures[0][1]
    for rel in names:
        out = dst / Path(rel).with_suffix(".clg")
        assert out.exists() == (rel != "sub/broken.png")
    # Each file is what compressing that image alone, with the batch's one thread, gives.
    image = load_image(src / "img0.png", mode="keep")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert (dst / "img0.clg").read_bytes() == compress(image, "pifs", 1)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_manifest_matches_the_files_on_disk(tmp_path, cluster):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_folder(src, n=4, corrupt=("bad.png",))
    compress_folder(src, dst, FAST, cluster, progress=False)
    lines = _manifest_lines(dst)
    assert [line["path"] for line in lines] == sorted(find_inputs(src, (".png", ".jpg")))  # compacted, sorted
    for line in lines:
        source = src / line["path"]
        assert line["input_bytes"] == source.stat().st_size and line["input_sha256"] == file_sha256(source)
        out = dst / line["output"]
        if line["status"] == "failed":
            assert not out.exists() and line["message"]
            continue
        assert line["status"] == "ok" and line["output_bytes"] == out.stat().st_size
        assert line["output_sha256"] == file_sha256(out)
        image = load_image_bytes(source.read_bytes(), mode="keep")
        decoded = decompress(out.read_bytes())
        assert line["psnr"] == pytest.approx(float(psnr(image, decoded)), abs=1e-9)
        assert line["bpp"] == pytest.approx(8 * out.stat().st_size / (line["width"] * line["height"]))
        assert (line["width"], line["height"]) == tuple(image.shape[:0:-1])
        assert line["settings"] == {"codec": "pifs", "quality": 1, "model": None, "alpha": None}


def test_rerun_skips_done_files_and_redoes_changed_inputs_and_settings(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_folder(src, n=3, size=48)
    first = compress_folder(src, dst, FAST, progress=False)
    assert first.done == 3
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in dst.rglob("*.clg")}
    again = compress_folder(src, dst, FAST, progress=False)
    assert (again.done, again.skipped) == (0, 3)
    assert stamps == {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in dst.rglob("*.clg")}
    # A changed input is redone (its old output is ours, so it may be replaced without force) ...
    (src / "img0.png").write_bytes((src / "img2.png").read_bytes())
    changed = compress_folder(src, dst, FAST, progress=False)
    assert (changed.done, changed.skipped) == (1, 2)
    assert (dst / "img0.clg").read_bytes() == (dst / "img2.clg").read_bytes()
    # ... and so is everything after a change of settings.
    other = compress_folder(src, dst, EncodeSettings("pifs", 2), progress=False)
    assert other.done == 3 and read_manifest(dst / MANIFEST_NAME)["img0.png"].settings["quality"] == 2
    # The search is a setting too (recorded only when given, so older manifests still match).
    assert "search" not in read_manifest(dst / MANIFEST_NAME)["img0.png"].settings
    searched = compress_folder(src, dst, EncodeSettings("pifs", 2, search="fast"), progress=False)
    assert searched.done == 3 and read_manifest(dst / MANIFEST_NAME)["img0.png"].settings["search"] == "fast"


def test_an_output_it_did_not_write_is_never_overwritten_without_force(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_folder(src, n=2, size=48)
    dst.mkdir()
    (dst / "img0.clg").write_bytes(b"somebody's file")
    summary = compress_folder(src, dst, FAST, progress=False)
    assert summary.failed == 1 and "not in the manifest" in summary.failures[0][1]
    assert (dst / "img0.clg").read_bytes() == b"somebody's file"
    forced = compress_folder(src, dst, FAST, force=True, progress=False)
    assert forced.done == 1 and forced.skipped == 1
    assert (dst / "img0.clg").read_bytes()[:4] != b"some"


def test_two_inputs_with_one_output_name_both_fail_and_the_rest_go_on(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_folder(src, n=2, size=48)
    (src / "img0.jpg").write_bytes((src / "sub/deeper/img1.jpg").read_bytes())
    summary = compress_folder(src, dst, FAST, progress=False)
    assert summary.done == 1 and summary.failed == 2
    assert all("would both be written to img0.clg" in message for _, message in summary.failures)
    assert not (dst / "img0.clg").exists()


def test_a_torn_manifest_line_is_ignored_and_the_run_goes_on(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_folder(src, n=2, size=48)
    compress_folder(src, dst, FAST, progress=False)
    manifest = dst / MANIFEST_NAME
    lines = manifest.read_bytes().splitlines(keepends=True)
    pending = json.dumps({**json.loads(lines[1]), "status": "pending"}).encode() + b"\n"
    # Killed while writing the "ok" line of the second file, after its "pending" line and the file.
    manifest.write_bytes(lines[0] + pending + lines[1][: len(lines[1]) // 2])
    summary = compress_folder(src, dst, FAST, progress=False)
    assert (summary.skipped, summary.done, summary.failed) == (2, 0, 0)
    assert [line["status"] for line in _manifest_lines(dst)] == ["ok", "ok"]
    # A torn line followed by a new run's lines: the new lines are read whole.
    manifest.write_bytes(manifest.read_bytes() + b'{"path": "img0.png", "sta')
    compress_folder(src, dst, EncodeSettings("pifs", 2), progress=False)
    assert [line["settings"]["quality"] for line in _manifest_lines(dst)] == [2, 2]


def test_a_pending_line_whose_output_is_in_place_counts_as_done(tmp_path):
    """Killed after writing a file but before its ``ok`` line: the rerun keeps the file."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_folder(src, n=1, size=48)
    compress_folder(src, dst, FAST, progress=False)
    manifest = dst / MANIFEST_NAME
    line = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**line, "status": "pending"}) + "\n")
    stamp = (dst / "img0.clg").stat().st_mtime_ns
    summary = compress_folder(src, dst, FAST, progress=False)
    assert summary.skipped == 1 and (dst / "img0.clg").stat().st_mtime_ns == stamp
    assert _manifest_lines(dst)[0]["status"] == "ok"


@pytest.mark.slow
def test_a_killed_batch_reruns_without_redoing_finished_files(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_folder(src, n=10, size=96)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "neural_collages", "batch", "compress", str(src), str(dst), "--workers", "1",
           "--quality", "1"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    manifest = dst / MANIFEST_NAME
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and manifest.read_text().count('"status": "ok"') >= 3:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Dask workers
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the batch finished before it could be killed"
    finished = {rel for rel, record in read_manifest(manifest).items() if record.status in ("ok", "pending")}
    assert 3 <= len(finished) < 10
    stamps = {p: p.stat().st_mtime_ns for p in dst.rglob("*.clg")}
    summary = compress_folder(src, dst, EncodeSettings("pifs", 1), progress=False)
    assert summary.failed == 0 and summary.skipped >= len(finished) and summary.done + summary.skipped == 10
    for path, stamp in stamps.items():
        if path.relative_to(dst).with_suffix("").as_posix() in {Path(r).with_suffix("").as_posix() for r in finished}:
            assert path.stat().st_mtime_ns == stamp, f"{path} was redone"
    assert len(list(dst.rglob("*.clg"))) == 10 and not list(dst.rglob(".*tmp*"))


@pytest.mark.slow
def test_decompress_folder_gives_what_decoding_each_file_gives(tmp_path, cluster):
    src, clg, out = tmp_path / "src", tmp_path / "clg", tmp_path / "out"
    make_folder(src, n=2, size=48)
    compress_folder(src, clg, FAST, progress=False)
    summary = decompress_folder(clg, out, scale=2, engine=cluster, progress=False)
    assert summary.done == 2 and summary.ok
    for path in clg.rglob("*.clg"):
        expected = decompress(path.read_bytes(), scale=2)
        got = load_image(out / path.relative_to(clg).with_suffix(".png"), mode="keep")
        assert torch.equal(got, expected)


def test_bad_arguments_fail_with_one_clear_error(tmp_path):
    with pytest.raises(ConfigurationError, match="not a folder"):
        compress_folder(tmp_path / "missing", tmp_path / "dst", progress=False)
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ConfigurationError, match="not a folder"):
        compress_folder(tmp_path, tmp_path / "file", progress=False)
    with pytest.raises(ConfigurationError, match="suffix"):
        decompress_folder(tmp_path, tmp_path / "o", suffix=".gif", progress=False)
    with pytest.raises(ConfigurationError, match="workers"):
        make_engine(workers=0)
    with pytest.raises(ConfigurationError, match="scheduler"):
        make_engine(scheduler="tcp://127.0.0.1:1", serial=True)


def test_without_dask_the_engine_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"neural-collages\[distributed\]"):
        make_engine(workers=1)


@pytest.mark.slow
def test_an_existing_cluster_is_used_by_its_scheduler_address(tmp_path, cluster):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_folder(src, n=2, size=48)
    address = cluster.client.scheduler.address  # the module's cluster, reached as any remote one would be
    with make_engine(scheduler=address) as engine:
        summary = compress_folder(src, dst, FAST, engine, progress=False)
        assert engine.workers == 2 and address in engine.description
    assert summary.done == 2 and summary.ok


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path):
    make_folder(tmp_path / "src", n=1, size=48)
    with make_engine(scheduler="tcp://127.0.0.1:9", connect_timeout=2) as engine:
        with pytest.raises(CollageError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
            compress_folder(tmp_path / "src", tmp_path / "dst", FAST, engine, progress=False)
