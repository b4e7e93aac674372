"""The PIFS residual layer: transforms, coding of the coefficients, hostile sections, and files with a layer."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fuzzing import with_params
from neural_collages.assets import sample_image_path
from neural_collages.codecs import decompress, pifs
from neural_collages.codecs.pifs import codec as pifs_codec
from neural_collages.codecs.pifs import residual
from neural_collages.codecs.pifs import residual_encoder
from neural_collages.coding.container import unpack
from neural_collages.coding.varints import ByteReader
from neural_collages.errors import ConfigurationError, FormatError
from neural_collages.imaging.io import load_image
from neural_collages.imaging.metrics import psnr


@pytest.fixture(scope="module")
def photo():
    """A 96x120 crop of the bundled photo (detailed enough for the encoder to choose a layer)."""
    return load_image(sample_image_path())[:, 30:126, 50:170].contiguous()


@pytest.fixture(scope="module")
def layered(photo):
    data = pifs.encode(photo, pifs.PifsConfig(quality=9))
    assert unpack(data)[0].params["res_y"] > 0, "the encoder should choose a residual layer here"
    return data


def _sparse_levels(rng, blocks, density):
    levels = np.where(rng.random((blocks, 64)) < density, rng.geometric(0.4, (blocks, 64)), 0)
    return levels * rng.choice([-1, 1], (blocks, 64))


def test_block_dct_is_orthonormal_and_its_inverse_undoes_it():
    x = torch.randn(24, 40, dtype=torch.float64) * 50
    c = residual.block_dct(x)
    assert c.shape == (3, 5, 64)
    torch.testing.assert_close(residual.block_idct(c), x, atol=1e-3, rtol=0)
    torch.testing.assert_close(c.pow(2).sum(), x.pow(2).sum(), rtol=1e-5, atol=0)
    flat = residual.block_dct(torch.full((8, 8), 3.0, dtype=torch.float64))
    assert abs(float(flat[0, 0, 0]) - 24.0) < 1e-5 and float(flat[0, 0, 1:].abs().max()) < 1e-5


def test_transforms_and_classes_do_not_depend_on_the_thread_count():
    x = torch.rand(64, 96) * 255
    threads = torch.get_num_threads()
    try:
        out = []
        for n in (1, 2):
            torch.set_num_threads(n)
            out.append((residual.block_idct(residual.block_dct(x)), residual.activity_classes(x, 6.0)))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out[0][0], out[1][0]) and np.array_equal(out[0][1], out[1][1])
    assert out[0][1].min() >= 0 and out[0][1].max() < residual.NUM_CLASSES


@pytest.mark.parametrize("scale", [2, 3, 4, 7])
def test_the_upsampled_residual_pools_back_to_itself(scale, monkeypatch):
    r = torch.randn(21, 13) * 20
    plane = torch.zeros(21 * scale, 13 * scale)
    residual.add_upsampled(plane, r, scale)
    torch.testing.assert_close(F.avg_pool2d(plane[None, None], scale)[0, 0], r, atol=1e-4, rtol=0)
    # Strips give exactly the whole-plane result, and a cropped target gets the same top-left part.
    monkeypatch.setattr(residual, "STRIP_ROWS", 4)
    strips = torch.zeros_like(plane)
    residual.add_upsampled(strips, r, scale)
    assert torch.equal(strips, plane)
    cropped = torch.zeros(21 * scale - 3, 13 * scale - 2)
    residual.add_upsampled(cropped, r, scale)
    assert torch.equal(cropped, plane[: cropped.shape[0], : cropped.shape[1]])
    # Smooth where the residual is: a linear ramp is interpolated, not replicated in steps.
    ramp = torch.arange(21.0)[:, None].expand(21, 13).contiguous()
    up = torch.zeros(21 * scale, 13 * scale)
    residual.add_upsampled(up, ramp, scale)
    inner = up[scale: -scale, 0]
    steps = inner[1:] - inner[:-1]
    torch.testing.assert_close(steps, torch.full_like(steps, 1 / scale), atol=1e-4, rtol=0)


@pytest.mark.parametrize("density", [0.0, 0.02, 0.3])
def test_group_coding_round_trips_exactly(density):
    rng = np.random.default_rng(3)
    planes = [_sparse_levels(rng, 6 * 9, density).reshape(6, 9, 64), _sparse_levels(rng, 12, density).reshape(3, 4, 64)]
    classes = [rng.integers(0, residual.NUM_CLASSES, (6, 9)), rng.integers(0, residual.NUM_CLASSES, (3, 4))]
    data = residual_encoder.encode_group(planes, classes)
    reader = ByteReader(data)
    back = residual.decode_group(reader, classes)
    assert reader.remaining() == 0
    assert all(np.array_equal(a, b) for a, b in zip(planes, back))


def test_estimated_bits_match_the_coded_size():
    """The costs rd_optimise decides with are the coder's: within 1 % and 40 bytes of parameters."""
    rng = np.random.default_rng(4)
    levels = _sparse_levels(rng, 4000, 0.05)
    classes = rng.integers(0, residual.NUM_CLASSES, 4000)
    model = residual_encoder.GroupModel.fit(levels, classes)
    flag_bits, value_bits = model.bit_costs()
    coded = (levels != 0).any(1)
    contexts = (classes[:, None] * residual.NUM_BANDS + residual.BAND_OF[None, :])
    estimate = flag_bits[classes, coded.astype(int)].sum() + value_bits[contexts, levels + residual.MAX_LEVEL][coded].sum()
    actual = 8 * len(residual_encoder.encode_group([levels.reshape(40, 100, 64)], [classes.reshape(40, 100)]))
    params = 8 * (len(model.flag_params) + 2 * len(model.coef_params))
    assert abs(actual - params - estimate) < 0.01 * estimate + 8 * 8


def test_rd_optimisation_lowers_the_lagrangian_cost():
    rng = np.random.default_rng(5)
    coeffs = rng.laplace(0, 6, (500, 64)) * np.linspace(2, 0.2, 64)
    step, lam = 8.0, 60.0
    plain = np.clip(np.sign(coeffs) * np.floor(np.abs(coeffs) / step + 0.5), -255, 255).astype(np.int64)
    classes = rng.integers(0, residual.NUM_CLASSES, 500)

    def cost(levels):
        bits = 8 * len(residual_encoder.encode_group([levels.reshape(20, 25, 64)], [classes.reshape(20, 25)]))
        return ((coeffs - levels * step) ** 2).sum() + lam * bits

    optimised = residual_encoder.rd_optimise(coeffs, plain, classes, step, 0, lam)
    assert cost(optimised) < 0.97 * cost(plain)
    assert np.all(np.abs(optimised) <= np.abs(plain))


def test_hostile_sections_raise_format_errors():
    rng = np.random.default_rng(6)
    levels = [_sparse_levels(rng, 20, 0.1).reshape(4, 5, 64)]
    steps = residual.ResidualSteps(16, 8, 0)
    fractal = [torch.zeros(32, 40)]
    fractal_classes = [residual.activity_classes(fractal[0], steps.step(0))]
    good = residual_encoder.encode_group(levels, fractal_classes)
    residual.decode_residual(ByteReader(good), fractal, steps)
    for n in range(len(good)):  # every truncation
        with pytest.raises(FormatError):
            residual.decode_residual(ByteReader(good[:n]), fractal, steps)
    with pytest.raises(FormatError, match="after the residual layer"):
        residual.decode_residual(ByteReader(good + b"\0"), fractal, steps)
    with pytest.raises(FormatError, match="parameter"):
        residual.decode_residual(ByteReader(bytes([200]) + good[1:]), fractal, steps)
    flips = 0
    for i in range(len(good)):
        for bit in (0, 3, 7):
            bad = bytearray(good)
            bad[i] ^= 1 << bit
            try:
                out = residual.decode_residual(ByteReader(bytes(bad)), fractal, steps)
                assert out[0].shape == (32, 40)
            except FormatError:
                flips += 1
    assert flips > 0


def test_a_crafted_section_cannot_announce_more_blocks_than_its_bits_pay_for():
    """All 4096 blocks flagged at near-zero cost, with an empty coefficient segment: refused before decoding."""
    steps = residual.ResidualSteps(16, 8, 0)
    fractal = [torch.zeros(512, 512)]
    flags = residual.table_coding.encode(np.ones(4096, np.int64), np.zeros(4096, np.int64),
                                         residual.frequency_tables([residual.flag_pmf(0)], 0))
    section = bytes([0]) + flags + bytes([0, 0]) * 8 + bytes([1, 0, 0, 0, 0])
    with pytest.raises(FormatError, match="cannot fit"):
        residual.decode_residual(ByteReader(section), fractal, steps)


def test_a_file_with_a_layer_decodes_to_what_the_encoder_measured(photo, layered):
    """The encoder scores candidates on its own rebuild of the decode: it must be the decoder's, bit for bit."""
    seen = []
    original = pifs_codec._with_residual

    def spy(*args, **kwargs):
        data, planes = original(*args, **kwargs)
        seen.append((data, planes))
        return data, planes

    pifs_codec._with_residual = spy
    try:
        pifs.encode(photo, pifs.PifsConfig(quality=9))
    finally:
        pifs_codec._with_residual = original
    C, H, W = photo.shape
    layouts = pifs.plane_layouts(W, H, C, pifs.PifsConfig())
    for data, planes in seen:
        header, _ = unpack(data)
        expected = pifs_codec._planes_to_image(pifs_codec._cropped(planes, layouts), header, 1)
        assert torch.equal(decompress(data), expected)
    assert layered in [d for d, _ in seen]


def test_the_layer_pays_for_itself(photo, layered):
    """The chosen file's D + λR is below the fractal file's, and it is the better image."""
    plain = pifs.encode(photo, pifs.PifsConfig(quality=9), residual=False)
    assert unpack(plain)[0].params["res_y"] == 0
    lam = pifs.PifsConfig(quality=9).lam

    def cost(data):
        err = float((decompress(data) - photo).double().mul(255).pow(2).sum()) / 3
        return err + lam * 8 * len(data)

    assert cost(layered) < cost(plain)
    assert float(psnr(photo, decompress(layered))) > float(psnr(photo, decompress(plain))) + 0.5


def test_layered_files_keep_the_scale_relation_and_thread_independence(photo, layered):
    """Pooled 2x decodes match the 1x decode about as closely as without a layer (docs/pifs.md;
    the zoom's interpolation is not pooling-exact): in colour within 40 dB, in grey within a mean
    of 1.5 8-bit levels; the fractal zoom alone (``zoom`` 16, and version-3 files) keeps the exact
    relation up to rounding."""
    import dataclasses

    two = decompress(layered, 2)
    assert two.shape == (3, 192, 240)
    assert float(psnr(F.avg_pool2d(two.unsqueeze(0), 2)[0], decompress(layered))) > 40
    grey = pifs.encode(photo.mean(0, keepdim=True), pifs.PifsConfig(quality=9))
    header, payload = unpack(grey)
    assert header.params["res_y"] > 0
    pooled = F.avg_pool2d(decompress(grey, 2).unsqueeze(0), 2)[0]
    assert (pooled - decompress(grey)).abs().mean() <= 1.5 / 255
    legacy = dataclasses.replace(pifs.PifsConfig.from_params(header.params), zoom_detail=None)
    zoomed = pifs.decode_parts(header, payload, legacy, 2)
    off = (F.avg_pool2d(zoomed.unsqueeze(0), 2)[0] - decompress(grey)).abs() > 1 / 255 + 1e-6
    assert off.float().mean() < 0.01
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = decompress(layered, 3), pifs.encode(photo, pifs.PifsConfig(quality=9))
        torch.set_num_threads(2)
        double = decompress(layered, 3), pifs.encode(photo, pifs.PifsConfig(quality=9))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single[0], double[0]) and single[1] == double[1] == layered


def test_trajectories_end_at_the_decode(layered):
    header, payload = unpack(layered)
    config = pifs.PifsConfig.from_params(header.params)
    image, frames = pifs.decode_parts(header, payload, config, 2, return_trajectory=True)
    assert torch.equal(frames[-1], decompress(layered, 2)) and len(frames) == config.decode_steps + 1


def test_uint8_output_of_a_layered_file(layered):
    header, payload = unpack(layered)
    config = pifs.PifsConfig.from_params(header.params)
    levels = pifs.decode_parts(header, payload, config, 2, dtype=torch.uint8)
    assert torch.equal(levels, (decompress(layered, 2) * 255).round().to(torch.uint8))


@pytest.mark.parametrize("change,message", [
    ({"res_y": 0}, "residual layer"),
    ({"res_bias": 16}, "bias"),
    ({"res_c": 0}, "residual steps"),
    ({"res_y": 1.5}, "integer"),
    ({"v": 3}, "exactly the keys"),
    ({"zoom": 17}, "zoom"),
    ({"zoom": -1}, "zoom"),
    ({"zoom": 2.5}, "integer"),
])
def test_version_4_params_are_checked(layered, change, message):
    header, _ = unpack(layered)
    params = dict(header.params, **change)
    raw = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(FormatError, match=message):
        decompress(with_params(layered, raw))


def test_configs_write_version_5_and_old_settings_their_own_version():
    params = pifs.PifsConfig().to_params()
    assert params["v"] == 5 and params["res_y"] == 0 and params["zoom"] == 4
    assert pifs.PifsConfig.from_params(params) == pifs.PifsConfig()
    stored = pifs.PifsConfig(adaptive_symbols=False)
    assert stored.to_params()["v"] == 4 and pifs.PifsConfig.from_params(stored.to_params()) == stored
    assert set(stored.to_params()) == set(params)  # version 5 changes the payload, not the params
    legacy = pifs.PifsConfig(zoom_detail=None, adaptive_symbols=False)
    assert legacy.to_params()["v"] == 2 and "res_y" not in legacy.to_params() and "zoom" not in legacy.to_params()
    assert pifs.PifsConfig(zoom_detail=None, adaptive_symbols=False, residual_luma=8,
                           residual_chroma=4).to_params()["v"] == 3
    with pytest.raises(ConfigurationError):  # versions 1-3 have no adaptive streams
        pifs.PifsConfig(zoom_detail=None).to_params()
    with pytest.raises(ConfigurationError):
        pifs.PifsConfig(adaptive_symbols=1)
    with pytest.raises(ConfigurationError):
        pifs.PifsConfig(zoom_detail=17)
    with pytest.raises(ConfigurationError):
        pifs.PifsConfig(residual_luma=0, residual_bias=3)
    with pytest.raises(ConfigurationError):
        pifs.PifsConfig(residual_luma=8, residual_chroma=0)
