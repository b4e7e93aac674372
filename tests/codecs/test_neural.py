import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fuzzing import decode_hostile, mutations, payload_flips, with_params
from neural_collages.apps.cli import main
from neural_collages.assets import model_dir, sample_image_path
from neural_collages.codecs.neural import codec as neural_codec
from neural_collages.codecs import compress, decompress, neural, quality_levels
from neural_collages.coding.container import unpack
from neural_collages.errors import ConfigurationError, FormatError
from neural_collages.imaging.io import load_image
from neural_collages.imaging.metrics import psnr
from neural_collages.imaging.tensors import from_crops
from neural_collages.models.neural_collage import RANGE
from neural_collages.models.model_files import export_model, load_model


@pytest.fixture(scope="module")
def photo():
    """A 70x90 crop of the bundled photo (sides not multiples of the 32-px crop: exercises padding)."""
    return load_image(sample_image_path())[:, 40:110, 60:150].contiguous()


@pytest.fixture(scope="module")
def encoded(photo):
    return compress(photo, "neural", 2)


def test_shipped_models_cover_four_photo_qualities_and_an_aerial_model():
    assert len(quality_levels("neural", "photo")) >= 4
    assert quality_levels("neural", "aerial")
    for model in ("photo", "aerial"):
        for q in quality_levels("neural", model):
            path = model_dir() / f"{model}-q{q}.safetensors"
            assert path.stat().st_size < 4 * 2**20  # small enough to ship in the package


def test_round_trip_rate_and_quality_ordering(photo):
    sizes, qualities = [], []
    for q in quality_levels("neural", "photo"):
        data = compress(photo, "neural", q)
        decoded = decompress(data)
        assert decoded.shape == photo.shape
        sizes.append(len(data))
        qualities.append(float(psnr(photo, decoded)))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert qualities[-1] > qualities[0] + 2
    assert qualities[-1] > 25


def test_code_file_code_round_trip_is_bit_exact(photo, encoded):
    header, payload = unpack(encoded)
    decoded = neural.decode_code(header, payload, neural.config_from_params(header.params))
    code, decoded = neural.analyse(photo, decoded.loaded), decoded.code  # the model the file names
    assert code.grid == decoded.grid
    assert torch.equal(code.coefs, decoded.coefs)
    np.testing.assert_array_equal(code.mean_y, decoded.mean_y)
    np.testing.assert_array_equal(code.mean_c, decoded.mean_c)
    assert compress(photo, "neural", 2) == encoded  # encoding is deterministic


def test_file_size_matches_the_entropy_model_estimate():
    image = load_image(sample_image_path())
    for q in quality_levels("neural", "photo"):
        data = compress(image, "neural", q, exact_model=True)
        _, payload = unpack(data)
        estimate = neural.estimate_bits(image, "photo", q) / 8
        assert abs(len(payload) - estimate) <= 0.02 * estimate + 24, (q, len(payload), estimate)


def test_decoding_is_deterministic_across_runs_and_thread_counts(encoded):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = decompress(encoded)
        torch.set_num_threads(2)
        b = decompress(encoded)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a, decompress(encoded))
    # Dense matrix products may round differently with other thread counts: tolerate one 8-bit level.
    assert (a - b).abs().max() <= 1 / 255 + 1e-7


def test_scale_2_decode_pools_to_the_1x_decode_plane_by_plane(encoded):
    header, payload = unpack(encoded)
    decoded = neural.decode_code(header, payload, neural.config_from_params(header.params))
    model, code = decoded.loaded.model, decoded.code
    coefs, mean_y, mean_c, grid = code.coefs, code.mean_y, code.mean_c, code.grid
    n = grid[0] * grid[1]
    Ry, Dy = model.luma_op.num_ranges, model.luma_op.num_candidates
    Rc, Dc = model.chroma_op.num_ranges, model.chroma_op.num_candidates
    per = coefs.reshape(n, -1).float()
    code_y, code_c = model.codes(per[:, : Ry * Dy].reshape(n, 1, Ry, Dy), per[:, Ry * Dy:].reshape(n, 2, Rc, Dc),
                                 torch.from_numpy(mean_y).float()[None, None], torch.from_numpy(mean_c).float()[None])
    with torch.no_grad():
        for op, code in ((model.luma_op, code_y), (model.chroma_op, code_c)):
            planes = []
            for s in (1, 2):
                init = op.assemble(code.bias.unsqueeze(-1).expand(-1, -1, -1, (s * RANGE) ** 2), s)
                z, stats = op.decode(code, s, init=init, tol=1e-7, max_steps=200, check_contraction=False)
                assert stats.converged
                planes.append(from_crops(z, 1, grid))
            torch.testing.assert_close(F.avg_pool2d(planes[1], 2), planes[0], atol=1e-5, rtol=0)
    zoomed = decompress(encoded, scale=2)
    assert zoomed.shape[-2:] == (140, 180)


def test_greyscale_and_tiny_images(photo):
    grey = photo.mean(0, keepdim=True)
    out = decompress(compress(grey, "neural", 1))
    assert out.shape == grey.shape
    assert float(psnr(grey, out)) > 20
    tiny = photo[:, :5, :3].contiguous()
    assert decompress(compress(tiny, "neural", 1)).shape == tiny.shape


def test_bad_arguments(photo):
    with pytest.raises(ConfigurationError):
        compress(photo, "neural", 99)
    with pytest.raises(ConfigurationError):
        compress(photo, "neural", 1, model="satellite")
    with pytest.raises(ConfigurationError):
        compress(photo, "pifs", 1, model="photo")
    with pytest.raises(ConfigurationError):
        compress(photo[:2], "neural", 1)
    with pytest.raises(ConfigurationError):
        decompress(compress(photo, "neural", 1), scale=0)


def test_hostile_files_raise_only_format_errors_quickly(encoded):
    cases = list(mutations(encoded, 200, seed=3)) + payload_flips(encoded, 200, seed=4)
    header, _ = unpack(encoded)
    for key, value in [("model", "photo-q9"), ("model", "../../etc/passwd"), ("model_digest", "0" * 16),
                       ("payload_version", 3), ("payload_version", 1), ("extra", 1), ("model", 3),
                       ("deblock", [99, 0]), ("deblock", [0]), ("deblock", "on"), ("deblock", [True, 0])]:
        raw = json.dumps(dict(header.params, **{key: value}), sort_keys=True, separators=(",", ":")).encode()
        cases.append((f"params {key}={value}", with_params(encoded, raw)))

    def check(label, image):
        assert image.dim() == 3 and torch.isfinite(image).all(), label

    accepted, seconds = decode_hostile(cases, decompress, check)
    assert seconds < 60
    assert accepted < len(cases) // 10


def test_model_files_are_checked(tmp_path):
    loaded = neural.load_named_model("photo-q1")
    good = tmp_path / "good.safetensors"
    export_model(loaded.model, good)
    loaded = load_model(good)
    model, coef, mean = loaded.model, loaded.coef_counts, loaded.mean_counts
    np.testing.assert_array_equal(coef, loaded.model.integer_tables()[0])
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(FormatError):
        load_model(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(FormatError):
        load_model(garbage)
    with pytest.raises(FormatError, match="no such file"):
        load_model(tmp_path / "missing.safetensors")
    # A model of another shape: the error names the offending tensor.
    from neural_collages.models import NeuralCodecConfig, NeuralCollageCodec

    other = tmp_path / "other.safetensors"
    export_model(NeuralCollageCodec(NeuralCodecConfig(width=16)), other)
    model = load_model(other).model
    assert model.config.width == 16
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(other))
    from safetensors import safe_open

    with safe_open(str(other), framework="pt") as f:
        metadata = f.metadata()
    metadata = dict(metadata, config=json.dumps(dict(json.loads(metadata["config"]), width=32)))
    save_file(tensors, str(tmp_path / "mismatch.safetensors"), metadata=metadata)
    with pytest.raises(FormatError, match="shape"):
        load_model(tmp_path / "mismatch.safetensors")


def test_cli_neural_round_trip(tmp_path, capsys):
    src = tmp_path / "in.png"
    from neural_collages.imaging.io import save_image

    save_image(load_image(sample_image_path())[:, :64, :96], src)
    out = tmp_path / "a.clg"
    assert main(["compress", str(src), str(out), "--codec", "neural", "--quality", "1"]) == 0
    assert main(["info", str(out)]) == 0
    assert "neural" in capsys.readouterr().out
    assert main(["decompress", str(out), str(tmp_path / "b.png"), "--scale", "3"]) == 0
    assert load_image(tmp_path / "b.png").shape[-2:] == (192, 288)
    assert main(["compress", str(src), str(out), "--codec", "neural"]) == 2  # exists, no --force
    assert main(["compress", str(src), str(tmp_path / "c.clg"), "--codec", "pifs", "--model", "photo"]) == 2
    assert main(["compress", str(src), str(tmp_path / "d.clg"), "--codec", "neural", "--model", "aerial"]) == 0


@pytest.mark.parametrize("context,subsampling,hint", [(False, True, False), (True, True, False), (True, False, False),
                                                      (True, True, True)])
def test_round_trip_with_and_without_context_models(photo, tmp_path, monkeypatch, context, subsampling, hint):
    from neural_collages.models import NeuralCodecConfig, NeuralCollageCodec

    torch.manual_seed(0)
    model = NeuralCollageCodec(NeuralCodecConfig(width=16, blocks=1, context=context, mean_context=context,
                                                 chroma_subsampling=subsampling, search_hint=hint))
    with torch.no_grad():  # a spread of nonzero coefficients, so contexts vary
        model.encoder.luma_head.weight.normal_(std=2.0)
    path = tmp_path / "tiny.safetensors"
    export_model(model, path)
    loaded = neural.LoadedModel("photo-q1", path)
    monkeypatch.setattr(neural_codec, "load_named_model", lambda name: loaded)
    data = compress(photo, "neural", 1)
    header, payload = unpack(data)
    decoded = neural.decode_code(header, payload, neural.config_from_params(header.params)).code
    code = neural.analyse(photo, loaded)
    assert torch.equal(decoded.coefs, code.coefs) and (code.coefs != 0).any()
    np.testing.assert_array_equal(decoded.mean_y, code.mean_y)
    np.testing.assert_array_equal(decoded.mean_c, code.mean_c)
    # Never much above the ideal length; it may be below: this untrained model's probabilities of a
    # range ending early fall under the range coder's 2**-24 floor, which the data then benefit from.
    assert len(payload) < 1.02 * neural.estimate_bits(photo, "photo", 1) / 8 + 24


@pytest.mark.parametrize("budget", [1, 40_000])  # one crop row per band; a few rows per band
@pytest.mark.parametrize("grey", [False, True])
def test_large_decodes_in_bands_match_the_one_batch_decode(photo, monkeypatch, budget, grey):
    # Outputs above WHOLE_DECODE_PIXELS decode band by band (bounded memory). Each band iterates
    # to the tolerance on its own, so pixels may differ by rounding, never by more than one level.
    image = photo.mean(0, keepdim=True) if grey else photo
    data = compress(image, "neural", 3)
    whole = {s: decompress(data, scale=s) for s in (1, 2)}
    monkeypatch.setattr(neural_codec, "WHOLE_DECODE_PIXELS", 0)
    monkeypatch.setattr(neural_codec, "BAND_BUDGET", budget)
    for s, ref in whole.items():
        banded = decompress(data, scale=s)
        assert banded.shape == ref.shape and banded.dtype == ref.dtype
        diff = (banded - ref).abs() * 255
        assert float(diff.max()) <= 1.0 + 1e-4 and float((diff > 0).float().mean()) < 0.01
