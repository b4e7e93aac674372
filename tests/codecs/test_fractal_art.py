"""The fractal-art codec: codes round-trip bit-exactly, files are validated as hostile input."""

import pytest
import torch
import torch.nn.functional as F

from fuzzing import decode_hostile, mutations, payload_flips, with_params
from neural_collages import codecs
from neural_collages.codecs.fractal_art import decode_art, encode_art, read_art
from neural_collages.coding.container import describe, pack, unpack
from neural_collages.errors import ConfigurationError, FormatError
from neural_collages.fractal_art import FractalizeOptions, fractalize


@pytest.fixture(scope="module")
def art():
    torch.manual_seed(0)
    x = F.avg_pool2d(torch.rand(1, 3, 64, 80), 1)[0]
    return fractalize(x, FractalizeOptions(steps=3))[0]


@pytest.fixture(scope="module")
def data(art):
    return encode_art(art)


def test_code_round_trips_bit_exactly(art, data):
    back = read_art(data)
    assert torch.equal(back.code.weights, art.code.weights) and torch.equal(back.code.bias, art.code.bias)
    assert back.config == art.config and back.size == art.size
    assert encode_art(back) == data


def test_decompress_renders_at_any_scale_and_info_describes_it(data):
    one = codecs.decompress(data)
    two = codecs.decompress(data, scale=2)
    assert one.shape == (3, 64, 80) and two.shape == (3, 128, 160)
    assert torch.equal(one, (one * 255).round() / 255)  # 8-bit levels, like every decoder
    header, payload = unpack(data)
    text = describe(header, len(payload), len(data))
    assert "fractal-art (id 3)" in text and "isometries" in text
    with pytest.raises(ConfigurationError, match="fitted, not compressed"):
        codecs.compress(one, "fractal-art")
    with pytest.raises(ConfigurationError, match="scale"):
        codecs.decompress(data, scale=17)


def test_non_contractive_or_wrong_sized_codes_are_refused(art, data):
    header, payload = unpack(data)
    config = codecs.fractal_art.ArtConfig.from_params(header.params)
    # Weights first: make the first range's domain weights sum to 1.5 (float16 little-endian 0x3E00).
    D = art.code.weights.shape[-1]
    bad = bytearray(payload)
    bad[0:2] = b"\x00\x3e"
    with pytest.raises(FormatError, match="not contractive"):
        decode_art(header, bytes(bad), config)
    with pytest.raises(FormatError, match="payload has"):
        decode_art(header, payload[:-2], config)
    nan = bytearray(payload)
    nan[2 * D : 2 * D + 2] = b"\x00\x7e"
    with pytest.raises(FormatError, match="non-finite"):
        decode_art(header, bytes(nan), config)


def test_hostile_files_give_format_errors_or_bounded_decodes(data):
    header, _ = unpack(data)
    cases = list(mutations(data, 200, seed=3)) + payload_flips(data, 100, seed=4)
    for key, value in [("steps", 10**6), ("padded", [65536, 64]), ("range", 0), ("s_max", 1.5), ("v", 2),
                       ("isometries", [0, 0]), ("maps", "x"), ("aux", -1), ("extra", 1), ("s_max", 1)]:
        import json

        params = dict(header.params, **{key: value})
        cases.append((f"params {key}={value!r}", with_params(data, json.dumps(params).encode())))

    def check(label, image):
        assert image.dim() == 3 and bool(torch.isfinite(image).all()), label

    _, seconds = decode_hostile(cases, codecs.decompress, check)
    assert seconds < 60


def test_packing_what_was_unpacked_is_the_same_file(data):
    assert pack(*unpack(data)) == data


@pytest.mark.parametrize("size, aux", [((93, 77), 2), ((16, 24), 0)])
def test_large_decodes_iterate_on_the_pooled_buffer_bit_exactly(size, aux, monkeypatch):
    # Above DENSE_BAND_VALUES a decode keeps no whole-image iterate, only the 8-bit output: it
    # must never run a whole-image step and must give the image iteration's levels bit for bit.
    # 93x77 pads to 96x80 (cropped on output), pools 12x10 windows (F.avg_pool2d) that straddle the
    # 16-row bands at scale 2; 16x24 pools 2x3 windows (strided sums).
    from neural_collages.codecs.base import to_8bit_levels
    from neural_collages.codecs.fractal_art import render
    from neural_collages.core import step

    torch.manual_seed(1)
    data = encode_art(fractalize(torch.rand(3, *size), FractalizeOptions(aux=aux, steps=2))[0])
    monkeypatch.setattr(step, "DENSE_BAND_VALUES", 500)  # one range row per band
    reference = to_8bit_levels(render(read_art(data), 2), 255)

    def whole_image_step(*args):
        raise AssertionError("a large fractal-art decode ran a whole-image step")

    monkeypatch.setattr(step, "dense_step", whole_image_step)
    image = codecs.decompress(data, scale=2)
    assert image.shape == (3, 2 * size[0], 2 * size[1]) and torch.equal(image, reference)
