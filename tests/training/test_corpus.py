"""Tests for the training-corpus module, on small generated images (no Debian/PyPI data needed)."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from neural_collages.apps.cli import main
from neural_collages.training import corpus as data
from neural_collages.training.corpus import CorpusError, build_corpus, load_corpus
from neural_collages.errors import CollageError, ConfigurationError, OutputExistsError


def _rng_uint8(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture
def sources(tmp_path, monkeypatch):
    """Four generated sources standing in for photo_sources(): large, small, greyscale, transparent."""
    src = tmp_path / "src"
    src.mkdir()
    large = _rng_uint8((150, 300, 3), seed=1)
    small = _rng_uint8((40, 60, 3), seed=2)
    grey = _rng_uint8((50, 70), seed=3)
    rgba = np.dstack([_rng_uint8((20, 20, 3), seed=4), np.full((20, 20), 128, np.uint8)])
    Image.fromarray(large).save(src / "large.png")
    Image.fromarray(small).save(src / "small.png")
    Image.fromarray(grey).save(src / "grey.png")
    Image.fromarray(rgba).save(src / "transparent.png")
    paths = sorted(src.iterdir()) + [src / "missing.png"]
    monkeypatch.setattr(data, "photo_sources", lambda: [p for p in paths if p.exists()])
    return {"large": large, "small": small, "grey": grey}


# --------------------------------------------------------------------------- sources


def test_sources_are_existing_files_and_never_kodak_or_astronaut():
    photos = data.photo_sources()
    assert photos == sorted(photos)
    for path in photos + data.aerial_sources("train") + data.aerial_sources("test"):
        assert path.is_file()
        assert "kodak" not in str(path).lower() and path.name != "astronaut.png"
    assert not set(data.aerial_sources("train")) & set(data.aerial_sources("test"))
    with pytest.raises(ConfigurationError):
        data.aerial_sources("val")


def test_kodak_is_refused(tmp_path):
    kodim = tmp_path / "kodak" / "kodim01.png"
    with pytest.raises(ConfigurationError, match="Kodak"):
        data._build("photo", [kodim], tmp_path / "out", None, False, False)


# --------------------------------------------------------------------------- build / load


def test_build_writes_pngs_and_manifest(sources, tmp_path):
    out = tmp_path / "corpus"
    manifest = build_corpus("photo", out, max_side=128, progress=False)
    assert json.loads((out / data.MANIFEST).read_text()) == manifest
    assert manifest["kind"] == "photo" and manifest["max_side"] == 128
    assert manifest["num_images"] == 3
    # The transparent source is skipped with a reason; the missing one was never listed.
    assert [s["source"].rsplit("/", 1)[-1] for s in manifest["skipped"]] == ["transparent.png"]

    by_source = {e["source"].rsplit("/", 1)[-1]: e for e in manifest["images"]}
    assert set(by_source) == {"large.png", "small.png", "grey.png"}
    large = by_source["large.png"]
    assert (large["source_width"], large["source_height"]) == (300, 150)
    assert (large["width"], large["height"]) == (128, 64)  # longer side reduced to max_side
    for entry in manifest["images"]:
        file = out / entry["file"]
        assert file.suffix == ".png"
        assert hashlib.sha256(file.read_bytes()).hexdigest() == entry["sha256"]
        with Image.open(file) as im:
            assert im.mode == "RGB" and im.size == (entry["width"], entry["height"])
    written = sorted([data.MANIFEST] + [e["file"] for e in manifest["images"]])
    assert sorted(p.name for p in out.iterdir()) == written


def test_build_refuses_to_overwrite_without_force(sources, tmp_path):
    out = tmp_path / "corpus"
    first = build_corpus("photo", out, max_side=128, progress=False)
    with pytest.raises(OutputExistsError):
        build_corpus("photo", out, max_side=128, progress=False)
    (out / "notes.txt").write_text("mine")
    second = build_corpus("photo", out, max_side=32, force=True, progress=False)
    assert second["max_side"] == 32 and len(second["images"]) == len(first["images"])
    assert (out / "notes.txt").read_text() == "mine"  # files the corpus did not write are left alone
    assert all(max(e["width"], e["height"]) <= 32 for e in second["images"])


def test_build_with_no_sources_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "photo_sources", lambda: [])
    with pytest.raises(CorpusError, match="docs/training.md"):
        build_corpus("photo", tmp_path / "out", progress=False)
    with pytest.raises(ConfigurationError):
        build_corpus("video", tmp_path / "out", progress=False)


def test_load_round_trip(sources, tmp_path):
    out = tmp_path / "corpus"
    manifest = build_corpus("photo", out, max_side=None, progress=False)
    images = load_corpus(out)
    assert len(images) == 3
    assert all(im.dtype == torch.uint8 and im.ndim == 3 and im.shape[0] == 3 for im in images)
    got = {e["source"].rsplit("/", 1)[-1]: im for e, im in zip(manifest["images"], images)}
    # Without resizing the pixels are bit-exact; greyscale is replicated into the three channels.
    assert np.array_equal(got["large.png"].permute(1, 2, 0).numpy(), sources["large"])
    assert np.array_equal(got["small.png"].permute(1, 2, 0).numpy(), sources["small"])
    assert all(np.array_equal(got["grey.png"][c].numpy(), sources["grey"]) for c in range(3))


def test_load_errors(sources, tmp_path):
    with pytest.raises(CorpusError, match="collage corpus"):
        load_corpus(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusError, match="collage corpus"):
        load_corpus(empty)

    out = tmp_path / "corpus"
    manifest = build_corpus("photo", out, max_side=64, progress=False)
    manifest_path = out / data.MANIFEST
    manifest_path.write_text('{"format": "neural-collages-corpus", "images": [')
    with pytest.raises(CollageError, match="corrupt manifest"):
        load_corpus(out)

    crafted = dict(manifest, images=[dict(manifest["images"][0], file="../src/large.png")])
    manifest_path.write_text(json.dumps(crafted))
    with pytest.raises(CorpusError, match="plain file name"):
        load_corpus(out)

    manifest_path.write_text(json.dumps(manifest))
    (out / manifest["images"][0]["file"]).write_bytes(b"not a png")
    with pytest.raises(CorpusError, match="do not match"):
        load_corpus(out)


# --------------------------------------------------------------------------- command line


def test_main_builds_and_reports(sources, tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["corpus", "photo", str(out), "--max-side", "64", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "3 images" in text and "megapixels" in text and "transparent.png" in text
    assert main(["corpus", "photo", str(out), "--quiet"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["corpus", "photo", str(out), "--quiet", "--force"]) == 0
