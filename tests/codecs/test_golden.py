"""Golden bitstreams: the exact bytes every codec, model and quality writes for the bundled sample,
and the exact pixels every committed file decodes to (like CompressAI's expected md5 files).

Same-process determinism tests cannot see a format drift across versions, machines or thread
counts; these files were written by an earlier version and must keep decoding bit-exactly. A
deliberate format change bumps the payload version and regenerates them
(``python tests/codecs/golden/regenerate.py``), saying so in the commit.
"""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from neural_collages import codecs
from neural_collages.coding.container import unpack
from neural_collages.assets import sample_image_path
from neural_collages.imaging.io import load_image, to_uint8

GOLDEN = Path(__file__).resolve().parent / "golden"
DIGESTS = json.loads((GOLDEN / "digests.json").read_text())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _case(name: str) -> tuple[str, str | None, int]:
    parts = name.split("-")
    quality = int(parts[-1][1:])
    return parts[0], (parts[1] if len(parts) == 3 else None), quality


def test_golden_set_covers_every_shipped_codec_model_and_quality():
    expected = {f"pifs-q{q}" for q in codecs.quality_levels("pifs")}
    for model in ("photo", "aerial"):
        expected |= {f"neural-{model}-q{q}" for q in codecs.quality_levels("neural", model)}
    assert set(DIGESTS) == expected
    assert {p.stem for p in GOLDEN.glob("*.clg")} == expected


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_committed_file_is_the_recorded_one(name):
    assert _sha256((GOLDEN / f"{name}.clg").read_bytes()) == DIGESTS[name]["file"]


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_committed_file_decodes_to_the_recorded_pixels_at_1x_and_2x(name):
    data = (GOLDEN / f"{name}.clg").read_bytes()
    threads = torch.get_num_threads()
    try:
        for scale, threads_used in ((1, 1), (2, max(2, threads))):
            torch.set_num_threads(threads_used)
            pixels = to_uint8(codecs.decompress(data, scale)).numpy().tobytes()
            assert _sha256(pixels) == DIGESTS[name][f"pixels_x{scale}"], f"{name} at {scale}x"
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sample():
    return load_image(sample_image_path())


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_encoding_the_sample_writes_the_recorded_bytes(sample, name):
    codec, model, quality = _case(name)
    data = codecs.compress(sample, codec, quality, model=model)
    assert _sha256(data) == DIGESTS[name]["file"], f"{name}: the encoder's output drifted"


# Files of earlier payload versions: (folder, version key) per codec. Version 1 was written before
# deblocking, PIFS version 2 before the residual layer (with ``--quality`` 1-8), PIFS version 3
# before the zoom parameter (its s× decodes are the fractal decode plus the residual upsampled),
# PIFS version 4 before adaptive symbol models (stored histograms).
OLD_VERSIONS = {"pifs-v1": "v", "neural-v1": "payload_version", "pifs-v2": "v", "pifs-v3": "v", "pifs-v4": "v"}
OLD_CASES = [(folder, name) for folder in OLD_VERSIONS
             for name in sorted(json.loads((GOLDEN / folder / "digests.json").read_text()))]


@pytest.mark.parametrize("folder,name", OLD_CASES)
def test_old_version_files_still_decode_to_their_recorded_pixels(folder, name):
    """They decode exactly as they always did: version 1 names no filter, version 2 has no residual
    layer, version 3 has one and no zoom parameter, version 4 stores its symbol histograms."""
    digests = json.loads((GOLDEN / folder / "digests.json").read_text())[name]
    data = (GOLDEN / folder / f"{name}.clg").read_bytes()
    assert _sha256(data) == digests["file"]
    header, _ = unpack(data)
    version = int(folder[-1])
    assert header.params[OLD_VERSIONS[folder]] == version
    assert ("deblock" in header.params) == (version > 1) and ("res_y" in header.params) == (version in (3, 4))
    assert ("zoom" in header.params) == (version == 4)
    for scale in (1, 2):
        pixels = to_uint8(codecs.decompress(data, scale)).numpy().tobytes()
        assert _sha256(pixels) == digests[f"pixels_x{scale}"], f"{folder}/{name} at {scale}x"


def test_current_neural_files_name_their_deblocking():
    params = [unpack((GOLDEN / f"{name}.clg").read_bytes())[0].params for name in DIGESTS if name.startswith("neural")]
    assert all(p["payload_version"] == 2 and len(p["deblock"]) == 2 for p in params)
    assert any(p["deblock"] != [0, 0] for p in params)


def test_current_pifs_files_are_version_5_with_and_without_a_residual_layer():
    """Every new file names its zoom; low qualities stay fractal-only, higher ones carry a layer."""
    params = {name: unpack((GOLDEN / f"{name}.clg").read_bytes())[0].params
              for name in DIGESTS if name.startswith("pifs")}
    assert all(p["v"] == 5 and p["zoom"] == 4 for p in params.values())
    assert params["pifs-q1"]["res_y"] == 0 and params["pifs-q10"]["res_y"] > 0
