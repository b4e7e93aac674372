"""Deblocking of neural decodes (payload version 2): chosen by the encoder, never worse at 1x,
consistent across scales, checked when read from a file."""

import pytest
import torch
import torch.nn.functional as F

from neural_collages.assets import sample_image_path
from neural_collages.codecs import compress, decompress, neural
from neural_collages.codecs.neural import codec as neural_codec
from neural_collages.codecs.neural import deblocking
from neural_collages.coding.container import unpack
from neural_collages.errors import FormatError
from neural_collages.imaging.io import load_image
from neural_collages.imaging.metrics import psnr


@pytest.fixture(scope="module")
def photo():
    return load_image(sample_image_path())[:, :128, 64:224].contiguous()


@pytest.mark.parametrize("quality", [1, 4])
def test_the_chosen_filter_is_never_worse_than_none_and_helps_at_low_rate(photo, quality):
    filtered = compress(photo, "neural", quality, exact_model=True)
    plain = neural.encode(photo, "photo", quality, deblock=False, choose_model=False)
    presets = unpack(filtered)[0].params["deblock"]
    assert unpack(plain)[0].params["deblock"] == [0, 0]
    assert unpack(filtered)[1] == unpack(plain)[1]  # the same symbols: only the params differ
    gain = psnr(decompress(filtered), photo) - psnr(decompress(plain), photo)
    assert gain >= 0
    if quality == 1:
        assert presets != [0, 0] and gain > 0.1


def test_filtered_planes_at_scale_s_pool_to_the_filtered_1x_planes(photo):
    data = compress(photo, "neural", 1)
    header, payload = unpack(data)
    config = neural.config_from_params(header.params)
    assert config["deblock"] != deblocking.OFF
    decoded = neural.decode_code(header, payload, config)
    code_y, code_c = neural_codec.dense_codes(decoded.loaded, decoded.code)
    model = decoded.loaded.model
    planes = {}
    with torch.no_grad():
        for s in (1, 2, 3):
            ((luma, chroma),) = model.synthesize_planes(code_y, code_c, 1, decoded.code.grid, scale=s, tol=1e-7,
                                                        max_steps=200, aux_interpolation=config["aux_interpolation"])
            planes[s] = deblocking.apply(luma[0], chroma[0], config["deblock"], s)
    for s in (2, 3):
        for zoomed, base in zip(planes[s], planes[1]):
            torch.testing.assert_close(F.avg_pool2d(zoomed[None], s)[0], base, atol=1e-5, rtol=0)
    unfiltered = model.synthesize_planes(code_y, code_c, 1, decoded.code.grid)[0][0][0]
    assert (planes[1][0] - unfiltered).abs().max() > 1e-3  # the filter did something


def test_banded_large_decodes_apply_the_same_filter(photo, monkeypatch):
    data = compress(photo, "neural", 1)
    assert unpack(data)[0].params["deblock"] != [0, 0]
    whole = decompress(data, scale=2)
    monkeypatch.setattr(neural_codec, "WHOLE_DECODE_PIXELS", 0)
    banded = decompress(data, scale=2)
    assert float((banded - whole).abs().max()) * 255 <= 1.0 + 1e-4


@pytest.mark.parametrize("value", [[37, 0], [0, -1], [0], [0, 0, 0], "on", [True, 0], [1.0, 2], None, {}])
def test_bad_deblock_params_are_format_errors(value):
    params = {"payload_version": 2, "model": "photo-q1", "model_digest": "0" * 16, "deblock": value}
    with pytest.raises(FormatError, match="deblock"):
        neural.config_from_params(params)


def test_params_must_be_exactly_their_versions_keys():
    base = {"model": "photo-q1", "model_digest": "0" * 16}
    assert neural.config_from_params({"payload_version": 1, **base})["deblock"] == deblocking.OFF
    assert neural.config_from_params({"payload_version": 2, **base, "deblock": [3, 4]})["deblock"] == (3, 4)
    for params in ({"payload_version": 1, **base, "deblock": [0, 0]}, {"payload_version": 2, **base},
                   {"payload_version": 3, **base, "deblock": [0, 0]}):
        with pytest.raises(FormatError):
            neural.config_from_params(params)


def test_every_preset_is_a_valid_filter():
    assert deblocking.PRESETS[0] is None and len(set(deblocking.PRESETS)) == len(deblocking.PRESETS)
    plane = torch.rand(2, 32, 48)
    for preset in range(len(deblocking.PRESETS)):
        out = deblocking.filter_plane(plane, preset, 1)
        assert out.shape == plane.shape and torch.isfinite(out).all()
        assert (out.mean() - plane.mean()).abs() < 1e-2  # a ramp moves values, it does not add or remove light
    assert torch.equal(deblocking.filter_plane(plane, 0, 1), plane)
