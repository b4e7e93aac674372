"""The codec protocol and registry, decode-scale checks and the shared 8-bit output step."""

import numpy as np
import pytest
import torch

import neural_collages.codecs  # noqa: F401  (registers the built-in codecs)
from neural_collages import limits
from neural_collages.codecs import base
from neural_collages.codecs.base import (
    MAX_SCALE,
    Codec,
    check_decode_scale,
    decoder_for,
    get_codec,
    register,
    registered,
    to_8bit_levels,
)
from neural_collages.coding.container import CODEC_IDS, ContainerHeader
from neural_collages.errors import ConfigurationError, FormatError


class FakeCodec:
    """Implements the protocol's members, under any name."""

    def __init__(self, name):
        self.name = name

    def qualities(self, model=None):
        return (1,)

    def encode(self, image, quality=None, *, model=None, progress=False):
        return b""

    def config_from_params(self, params):
        return None

    def decode(self, header, payload, config, scale=1, return_trajectory=False, dtype=torch.float32):
        return torch.zeros(1, 1, 1)


class MissingDecode:
    name = "pifs"

    def qualities(self, model=None):
        return (1,)

    def encode(self, image, quality=None, *, model=None, progress=False):
        return b""

    def config_from_params(self, params):
        return None


def header(codec="pifs", width=10, height=10, channels=3):
    return ContainerHeader(codec=codec, width=width, height=height, channels=channels, params={})


# ------------------------------------------------------------------ registry


def test_builtin_codecs_are_registered_and_reachable():
    names = registered()
    assert isinstance(names, tuple)
    assert {"pifs", "neural"} <= set(names)
    for name in names:
        codec = get_codec(name)
        assert isinstance(codec, Codec)
        assert codec.name == name
        assert name in CODEC_IDS  # every registered codec has a container id
        assert decoder_for(header(name)) is codec


@pytest.mark.parametrize("name", ["nope", "", "PIFS", "pifs ", None])
def test_get_codec_unknown_name(name):
    with pytest.raises(ConfigurationError, match="unknown codec"):
        get_codec(name)


def test_decoder_for_a_codec_this_build_does_not_have(monkeypatch):
    monkeypatch.delitem(base._REGISTRY, "neural")
    assert "neural" not in registered()
    with pytest.raises(FormatError, match="no decoder"):
        decoder_for(header("neural"))
    with pytest.raises(ConfigurationError):
        get_codec("neural")
    assert decoder_for(header("pifs")) is get_codec("pifs")  # the others still decode


def test_decoder_for_an_unknown_codec_name():
    with pytest.raises(FormatError):
        decoder_for(header("not-a-codec"))


@pytest.mark.parametrize("obj", [object(), "pifs", MissingDecode(), FakeCodec])
def test_register_rejects_objects_that_do_not_implement_the_protocol(obj):
    before = registered()
    with pytest.raises(ConfigurationError, match="protocol"):
        register(obj)
    assert registered() == before


def test_register_rejects_a_name_without_a_container_codec_id():
    before = registered()
    with pytest.raises(ConfigurationError, match="no id"):
        register(FakeCodec("not-a-codec"))
    assert registered() == before


def test_register_refuses_a_second_codec_under_a_taken_name_and_is_idempotent():
    original = get_codec("pifs")
    with pytest.raises(ConfigurationError, match="already registered"):
        register(FakeCodec("pifs"))
    assert get_codec("pifs") is original
    assert register(original) is original  # registering the same object again is harmless
    assert get_codec("pifs") is original


def test_register_adds_a_codec_with_a_container_id(monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", {k: v for k, v in base._REGISTRY.items() if k != "neural"})
    fake = FakeCodec("neural")
    assert register(fake) is fake
    assert get_codec("neural") is fake
    assert decoder_for(header("neural")) is fake


# ------------------------------------------------------------------ decode scale


@pytest.mark.parametrize("scale", [1, 2, 7, MAX_SCALE, np.int64(3), np.int32(16)])
def test_check_decode_scale_accepts_integers_in_range(scale):
    out = check_decode_scale(scale, header())
    assert out == int(scale) and type(out) is int


@pytest.mark.parametrize("scale", [True, False, 0, -1, MAX_SCALE + 1, 17, 1.0, 2.0, 2.5, "2", None, torch.tensor(2)])
def test_check_decode_scale_rejects(scale):
    with pytest.raises(ConfigurationError):
        check_decode_scale(scale, header())


def test_check_decode_scale_respects_max_scale():
    assert check_decode_scale(4, header(), max_scale=4) == 4
    with pytest.raises(ConfigurationError):
        check_decode_scale(5, header(), max_scale=4)


def test_check_decode_scale_bounds_the_output_pixel_count(monkeypatch):
    monkeypatch.setattr(limits, "MAX_PIXELS", 100)
    h = header(width=5, height=4)  # 20 pixels: scale 2 gives 80, scale 3 gives 180
    assert check_decode_scale(1, h) == 1
    assert check_decode_scale(2, h) == 2
    with pytest.raises(ConfigurationError, match="180 pixels, more than the limit of 100"):
        check_decode_scale(3, h)
    monkeypatch.setattr(limits, "MAX_PIXELS", 80)  # exactly at the limit is allowed
    assert check_decode_scale(2, h) == 2
    monkeypatch.setattr(limits, "MAX_PIXELS", 79)
    with pytest.raises(ConfigurationError):
        check_decode_scale(2, h)
    assert check_decode_scale(2, h, max_pixels=80) == 2  # an explicit limit overrides the default
    with pytest.raises(ConfigurationError, match="limit of 10"):
        check_decode_scale(1, h, max_pixels=10)
    with pytest.raises(ConfigurationError):
        check_decode_scale(1, header(width=10, height=10))


def test_the_default_pixel_limit_applies_to_large_scales():
    big = header(width=4096, height=4096)  # 16 Mpixel
    assert check_decode_scale(2, big) == 2  # 64 Mpixel = MAX_PIXELS
    with pytest.raises(ConfigurationError):
        check_decode_scale(3, big)


# ------------------------------------------------------------------ 8-bit output


def nearest_float32_is(value: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Whether each float32 ``value`` is the float32 nearest to ``k / 255``."""
    exact = k.double() / 255
    v = value.double()
    up = torch.nextafter(value, torch.full_like(value, 2.0)).double()
    down = torch.nextafter(value, torch.full_like(value, -1.0)).double()
    err = (v - exact).abs()
    return (err <= (up - exact).abs()) & (err <= (down - exact).abs())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_to_8bit_levels_gives_exactly_k_over_255(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 40, 50, generator=g, dtype=torch.float64) * 300 - 20).to(dtype)
    out = to_8bit_levels(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    k = torch.round(out.double() * 255)
    assert bool((k >= 0).all() and (k <= 255).all())
    assert bool(nearest_float32_is(out, k).all())
    # The level is the rounded, clamped input.
    assert torch.equal(k, x.double().clamp(0, 255).round())


def test_to_8bit_levels_covers_every_level_and_is_idempotent():
    levels = torch.arange(256, dtype=torch.float64)
    out = to_8bit_levels(levels)
    assert bool(nearest_float32_is(out, levels).all())
    assert out[0] == 0.0 and out[255] == 1.0
    assert torch.equal(to_8bit_levels(out.double() * 255), out)
    assert torch.equal(to_8bit_levels(out * 255), out)


def test_to_8bit_levels_clamps_and_rounds():
    x = torch.tensor([-1e9, -0.4, 0.4, 0.6, 127.49, 127.51, 254.6, 255.4, 1e9, float("inf"), -float("inf")])
    out = to_8bit_levels(x)
    expected = torch.tensor([0, 0, 0, 1, 127, 128, 255, 255, 255, 255, 0], dtype=torch.float32) / 255
    assert torch.equal(out, expected)


@pytest.mark.parametrize("gain", [None, 255.0])
def test_8bit_levels_in_bands_equal_the_one_pass_conversion(monkeypatch, gain):
    import neural_collages.codecs.base as base

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 37, 29, generator=g, dtype=torch.float64) * 300 - 20)[:, 2:, 3:]  # a cropped view
    if gain:
        x = x / 255
    whole = base.to_8bit_levels(x, gain)
    reference = (x * (gain or 1)).clamp(0, 255).round() / 255
    monkeypatch.setattr(base, "LEVELS_CHUNK", 50)
    banded = base.to_8bit_levels(x, gain)
    assert banded.dtype == torch.float32 and torch.equal(banded, whole)
    assert torch.equal(whole, reference.float())


@pytest.mark.parametrize("codec, key", [("pifs", "v"), ("neural", "payload_version"), ("fractal-art", "v")])
@pytest.mark.parametrize("spelling", ["true", "float", "string"])
def test_the_payload_version_has_one_spelling(codec, key, spelling):
    # Found by the fuzz harness: `!=` let `true` and `1.0` pass for version 1.
    import dataclasses

    from neural_collages.codecs import compress, decompress
    from neural_collages.coding.container import pack, unpack

    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    if codec == "fractal-art":
        from neural_collages.codecs.fractal_art import encode_art
        from neural_collages.fractal_art import FractalizeOptions, fractalize

        data = encode_art(fractalize(x, FractalizeOptions(steps=0))[0])
    else:
        data = compress(x, codec, 1)
    header, payload = unpack(data)
    version = header.params[key]
    assert type(version) is int and version >= 1
    decompress(data)  # the original decodes
    # True == 1 and 1.0 == 1 in Python: only the int itself is the version.
    forged_value = {"true": True, "float": float(version), "string": str(version)}[spelling]
    if spelling == "true" and version != 1:
        forged_value = 1.0 * version  # bool can only spell 1
    forged = pack(dataclasses.replace(header, params={**header.params, key: forged_value}), payload)
    with pytest.raises(FormatError, match="version"):
        decompress(forged)
