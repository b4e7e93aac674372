"""The rate–distortion harness (benchmarks/rd.py, codecs.py, plot_rd.py) on tiny synthetic images."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import codecs as registry  # noqa: E402
from benchmarks import plot_rd, rd  # noqa: E402

SCHEMA_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")


def _synthetic(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Smooth colour gradients plus some texture: compresses like a (very small) photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([
        128 + 90 * np.sin(xx / (7 + seed)) * np.cos(yy / 9),
        255 * xx / w,
        255 * yy / h,
    ], axis=-1)
    img += rng.normal(0, 12, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_synthetic(i), mode="RGB").save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    return folder


def test_runner_end_to_end(image_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    for name in ("jpeg", "webp"):
        monkeypatch.setattr(registry.get_codec(name), "qualities", (20, 80))
    out = tmp_path / "results"
    code = rd.main(["--images", str(image_dir), "--codecs", "jpeg", "webp", "--out", str(out),
                    "--quiet", "--repeats", "2"])
    assert code == 0, capsys.readouterr().err

    for name in ("jpeg", "webp"):
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["name"] == name and doc["description"]
        assert doc["quality"] == [20, 80]
        res = doc["results"]
        assert set(SCHEMA_KEYS) <= set(res)
        assert all(len(res[k]) == 2 for k in SCHEMA_KEYS)
        bpp, psnr, msssim = res["bpp"], res["psnr-rgb"], res["ms-ssim-rgb"]
        assert 0 < bpp[0] < bpp[1], bpp
        assert all(math.isfinite(v) for v in psnr) and 15 < psnr[0] < psnr[1] < 60, psnr
        assert all(0 < v <= 1 for v in msssim) and msssim[0] < msssim[1]
        assert all(t >= 0 for k in ("encoding_time", "decoding_time") for t in res[k])
        # one entry per quality is the mean over the images
        per_image = doc["per_image"]
        assert [r["image"] for r in per_image] == ["img0.png", "img1.png"]
        assert all((r["height"], r["width"]) == (48, 64) for r in per_image)
        for k in ("bpp", "psnr-rgb"):
            assert res[k] == pytest.approx(np.mean([r[k] for r in per_image], axis=0).tolist())
        assert per_image[0]["bpp"][0] == pytest.approx(8 * per_image[0]["bytes"][0] / (48 * 64))
        meta = doc["meta"]
        assert meta["num_images"] == 2 and meta["image_dir"] == "images" and meta["repeats"] == 2
        assert meta["machine"]["cpu_count"] >= 1 and "--codecs" in meta["command"]

    assert (out / "rd.png").stat().st_size > 10_000
    summary = (out / "summary.md").read_text()
    assert "| jpeg (measured) |" in summary and "(published)" in summary and "BD-rate" in summary


def test_plot_rd_standalone_and_table(tmp_path: Path) -> None:
    out = tmp_path / "res"
    out.mkdir()
    curve = {"name": "fake", "description": "d", "results": {"bpp": [0.2, 0.6], "psnr-rgb": [25.0, 29.0],
                                                           "ms-ssim-rgb": [0.9, 0.95]}}
    (out / "fake.json").write_text(json.dumps(curve))
    (out / "junk.json").write_text("{not json")  # skipped with a warning
    assert plot_rd.main(["--results", str(out), "--xmax", "1.0", "--anchor", "fake"]) == 0
    assert (out / "rd.png").exists()
    summary = (out / "summary.md").read_text()
    # 0.25 -> 25.5 (linear in bpp), 0.5 -> 28.0, 0.75 and 1.0 outside the measured range
    assert "| fake (measured) | 25.50 | 28.00 | – | – |" in summary
    assert plot_rd.main(["--results", str(tmp_path / "missing")]) == 2


def test_published_curves_parse_and_are_sorted() -> None:
    doc = json.loads((ROOT / "benchmarks" / "published" / "kodak.json").read_text())
    curves = doc["codecs"]
    names = {c["name"] for c in curves}
    assert {"VTM", "BPG 4:4:4", "COIN", "ELIC", "bmshj2018-factorized"} <= names
    assert not any("webp" in n.lower() or n.lower().startswith("jpeg (") for n in names)
    for c in curves:
        assert c["published"] is True and c["source"]
        bpp, psnr = c["results"]["bpp"], c["results"]["psnr-rgb"]
        assert len(bpp) == len(psnr) >= 4, c["name"]
        assert all(b < b2 for b, b2 in zip(bpp, bpp[1:])), f"{c['name']} not sorted by bpp"
        assert all(p < p2 for p, p2 in zip(psnr, psnr[1:])), f"{c['name']} PSNR not increasing"
    vtm = next(c for c in curves if c["name"] == "VTM")
    assert dict(zip(vtm["results"]["bpp"], vtm["results"]["psnr-rgb"]))[0.5] == 34.34
    coin = next(c for c in curves if c["name"] == "COIN")
    assert coin["results"]["bpp"][0] == 0.0368 and coin["results"]["bpp"][-1] == 1.209


def test_unknown_codec_is_a_clear_error(image_dir: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(registry.UnknownCodecError) as info:
        registry.get_codec("nope")
    assert "unknown codec 'nope'" in str(info.value) and "jpeg" in str(info.value)
    assert rd.main(["--images", str(image_dir), "--codecs", "nope", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown codec 'nope'" in err and "webp" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_bad_image_folder_exits_2(tmp_path: Path, capsys, case: str) -> None:
    folder = tmp_path / "imgs"
    if case == "empty":
        folder.mkdir()
    assert rd.main(["--images", str(folder), "--codecs", "jpeg", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert ("does not exist" if case == "missing" else "no images") in err and err.count("\n") == 1


def test_baseline_codecs_round_trip() -> None:
    image = _synthetic(3)
    for name in ("jpeg", "webp", "avif"):
        codec = registry.get_codec(name)
        data = codec.encode(image, codec.qualities[len(codec.qualities) // 2])
        out = codec.decode(data)
        assert isinstance(data, bytes) and out.dtype == np.uint8 and out.shape == image.shape
        assert np.abs(out.astype(int) - image).mean() < 20
    with pytest.raises(ValueError, match="uint8"):
        registry.get_codec("jpeg").encode(image.astype(np.float32), 50)


def test_project_codecs_hook(monkeypatch) -> None:
    """benchmarks.ours.benchmark_codecs() entries register; (name, qualities) pairs go
    through the module's compress/decompress tensor API."""
    import torch

    calls = []

    def compress(image, codec, quality):
        calls.append((codec, quality))
        assert image.dtype == torch.float32 and image.shape[0] == 3
        return (image * 255).round().to(torch.uint8).numpy().tobytes() + bytes(image.shape)

    def decompress(data):
        c, h, w = data[-3:]
        return torch.frombuffer(bytearray(data[:-3]), dtype=torch.uint8).reshape(c, h, w).float() / 255

    fake = types.ModuleType("benchmarks.ours")
    fake.compress, fake.decompress = compress, decompress
    fake.benchmark_codecs = lambda: [("fake-raw", (1, 2)), ("jpeg", (1,))]  # "jpeg" is taken: skipped
    monkeypatch.setitem(sys.modules, "benchmarks.ours", fake)
    try:
        with pytest.warns(RuntimeWarning, match="jpeg"):
            added = registry.load_project_codecs(force=True)
        assert added == ["fake-raw"] and "fake-raw" in registry.available_codecs()
        codec = registry.get_codec("fake-raw")
        image = _synthetic(1, 12, 20)
        assert tuple(codec.qualities) == (1, 2)
        assert np.array_equal(codec.decode(codec.encode(image, 2)), image) and calls == [("fake-raw", 2)]
        assert isinstance(registry.get_codec("jpeg"), registry.JpegCodec)
    finally:
        registry.unregister_codec("fake-raw")

    # a module without the hook, or none at all, is ignored silently
    monkeypatch.setitem(sys.modules, "benchmarks.ours", types.ModuleType("benchmarks.ours"))
    assert registry.load_project_codecs(force=True) == []
    monkeypatch.setitem(sys.modules, "benchmarks.ours", None)  # import raises ImportError
    assert registry.load_project_codecs(force=True) == []


def test_register_codec_rules() -> None:
    class Tiny(registry.ImageCodec):
        name, description, qualities = "tiny-test", "identity", (0,)

        def encode(self, image, quality):
            return image.tobytes()

        def decode(self, data):
            return np.frombuffer(data, np.uint8).reshape(2, 2, 3)

    try:
        assert registry.register_codec(Tiny) == "tiny-test"
        with pytest.raises(ValueError, match="already registered"):
            registry.register_codec(Tiny)
        assert registry.register_codec(Tiny(), replace=True) == "tiny-test"
        assert registry.get_codec("tiny-test").decode(bytes(12)).shape == (2, 2, 3)
        with pytest.raises(TypeError, match="missing"):
            registry.register_codec(object(), name="broken")
    finally:
        registry.unregister_codec("tiny-test")


def test_per_image_bd_rate_follows_each_images_own_curve():
    psnr = [28.0, 31.0, 34.0, 37.0]

    def curve(scale, images=("a.png", "b.png")):
        return {"per_image": [{"image": name, "bpp": [scale * (i + 1) * b for b in (0.2, 0.4, 0.8, 1.6)],
                               "psnr-rgb": psnr} for i, name in enumerate(images)]}

    anchor = curve(1.0)
    assert plot_rd._per_image_bd(anchor, curve(0.5)) == pytest.approx(-50.0, abs=1e-6)
    # A repeated point (one file at two qualities) counts once; images the anchor lacks are skipped.
    test = curve(0.5, ("a.png", "c.png"))
    test["per_image"][0]["bpp"].append(test["per_image"][0]["bpp"][-1])
    test["per_image"][0]["psnr-rgb"] = psnr + [psnr[-1]]
    assert plot_rd._per_image_bd(anchor, test) == pytest.approx(-50.0, abs=1e-6)
    assert plot_rd._per_image_bd(anchor, {"per_image": []}) is None
