import os

import numpy as np
import pytest
import torch
from PIL import Image

from neural_collages import limits
from neural_collages.errors import ConfigurationError, ImageError, OutputExistsError
from neural_collages.errors import TransparencyError
from neural_collages.imaging.io import load_image, save_animation, save_image, to_float, to_uint8


def _read(path, convert=None):
    with Image.open(path) as im:
        return np.asarray(im.convert(convert) if convert else im)


def _rng_uint8(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# --------------------------------------------------------------------------- load / save round trips


def test_png_round_trip_rgb_is_bit_exact(tmp_path):
    arr = _rng_uint8((13, 17, 3))
    Image.fromarray(arr, "RGB").save(tmp_path / "in.png")
    x = load_image(tmp_path / "in.png")
    assert x.dtype == torch.float32 and x.shape == (3, 13, 17)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert np.array_equal(to_uint8(x).permute(1, 2, 0).numpy(), arr)

    save_image(x, tmp_path / "out.png")
    assert np.array_equal(_read(tmp_path / "out.png"), arr)
    assert torch.equal(load_image(tmp_path / "out.png"), x)


def test_png_round_trip_grey_and_modes(tmp_path):
    arr = _rng_uint8((9, 11), seed=1)
    Image.fromarray(arr, "L").save(tmp_path / "g.png")
    grey = load_image(tmp_path / "g.png", mode="grey")
    keep = load_image(tmp_path / "g.png", mode="keep")
    rgb = load_image(tmp_path / "g.png", mode="rgb")
    assert grey.shape == keep.shape == (1, 9, 11)
    assert rgb.shape == (3, 9, 11)
    assert np.array_equal(to_uint8(grey)[0].numpy(), arr)
    assert torch.equal(rgb, grey.expand(3, -1, -1))

    save_image(grey, tmp_path / "g2.png")
    with Image.open(tmp_path / "g2.png") as im:
        assert im.mode == "L"
        assert np.array_equal(np.asarray(im), arr)


def test_grey_mode_uses_bt601_luma(tmp_path):
    arr = np.zeros((1, 3, 3), np.uint8)
    arr[0, 0] = (255, 0, 0)
    arr[0, 1] = (0, 255, 0)
    arr[0, 2] = (0, 0, 255)
    Image.fromarray(arr, "RGB").save(tmp_path / "c.png")
    grey = load_image(tmp_path / "c.png", mode="grey")
    assert grey.shape == (1, 1, 3)
    assert torch.allclose(grey[0, 0], torch.tensor([0.299, 0.587, 0.114]), atol=1e-6)
    assert load_image(tmp_path / "c.png", mode="keep").shape == (3, 1, 3)


def test_16_bit_png_is_scaled_to_unit_range(tmp_path):
    arr = np.array([[0, 1, 256, 32768], [40000, 65534, 65535, 12345]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as im:
        assert im.mode.startswith("I")  # really read back as 16 bit
    x = load_image(tmp_path / "d.png", mode="grey")
    assert x.shape == (1, 2, 4)
    assert torch.allclose(x[0].double(), torch.from_numpy(arr.astype(np.float64) / 65535.0), atol=1e-7)
    # Distinct 16-bit levels that share an 8-bit value stay distinct.
    assert x[0, 0, 0] < x[0, 0, 1] < x[0, 0, 2]
    assert load_image(tmp_path / "d.png").shape == (3, 2, 4)


# --------------------------------------------------------------------------- alpha


def _rgba(tmp_path, alpha_value):
    arr = np.zeros((4, 5, 4), np.uint8)
    arr[..., 0] = 200
    arr[..., 1] = 100
    arr[..., 2] = 0
    arr[..., 3] = alpha_value
    path = tmp_path / f"a{alpha_value}.png"
    Image.fromarray(arr, "RGBA").save(path)
    return path


def test_opaque_alpha_is_dropped_silently(tmp_path):
    x = load_image(_rgba(tmp_path, 255))
    assert x.shape == (3, 4, 5)
    assert torch.allclose(x[:, 0, 0], torch.tensor([200, 100, 0]) / 255.0)


def test_transparent_alpha_needs_an_explicit_choice(tmp_path):
    path = _rgba(tmp_path, 128)
    with pytest.raises(TransparencyError, match="alpha='composite'") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_alpha_composite_drop_keep(tmp_path):
    path = _rgba(tmp_path, 51)  # alpha 0.2
    a = 51 / 255.0
    comp = load_image(path, alpha="composite", background=(1.0, 0.0, 0.5))
    expected = torch.tensor([200 / 255.0 * a + 1.0 * (1 - a), 100 / 255.0 * a, 0.5 * (1 - a)])
    assert torch.allclose(comp[:, 2, 3], expected, atol=1e-6)

    drop = load_image(path, alpha="drop")
    assert torch.allclose(drop[:, 0, 0], torch.tensor([200, 100, 0]) / 255.0)

    keep = load_image(path, alpha="keep")
    assert keep.shape == (4, 4, 5)
    assert torch.allclose(keep[3], torch.full((4, 5), a))
    with pytest.raises(ConfigurationError):
        load_image(path, mode="grey", alpha="keep")


def test_palette_transparency_is_alpha(tmp_path):
    im = Image.new("P", (3, 2), 0)
    im.putpalette([10, 20, 30, 250, 240, 230] + [0] * 762)
    im.putpixel((1, 1), 1)
    im.save(tmp_path / "p.png", transparency=1)
    with pytest.raises(ImageError, match="alpha"):
        load_image(tmp_path / "p.png")
    comp = load_image(tmp_path / "p.png", alpha="composite", background=0.0)
    assert torch.equal(to_uint8(comp[:, 1, 1]), torch.zeros(3, dtype=torch.uint8))
    assert torch.equal(to_uint8(comp[:, 0, 0]), torch.tensor([10, 20, 30], dtype=torch.uint8))


def test_grey_alpha_composites_onto_background_luma(tmp_path):
    arr = np.zeros((2, 2, 2), np.uint8)
    arr[..., 0] = 100
    arr[..., 1] = 0
    Image.fromarray(arr, "LA").save(tmp_path / "la.png")
    x = load_image(tmp_path / "la.png", mode="keep", alpha="composite", background=(1.0, 1.0, 1.0))
    assert x.shape == (1, 2, 2)
    assert torch.allclose(x, torch.ones_like(x), atol=1e-6)


# --------------------------------------------------------------------------- EXIF


def test_exif_orientation_is_applied(tmp_path):
    arr = np.full((16, 32, 3), 255, np.uint8)
    arr[:, :16] = 0  # left half black, right half white (as stored)
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    Image.fromarray(arr, "RGB").save(tmp_path / "rot.jpg", exif=exif, quality=95)
    Image.fromarray(arr, "RGB").save(tmp_path / "plain.jpg", quality=95)

    plain = load_image(tmp_path / "plain.jpg")
    assert plain.shape == (3, 16, 32)
    x = load_image(tmp_path / "rot.jpg")
    assert x.shape == (3, 32, 16)
    # Rotating clockwise moves the stored left half to the top.
    assert float(x[:, :12].mean()) < 0.1
    assert float(x[:, 20:].mean()) > 0.9


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_image_error_naming_the_path(tmp_path):
    missing = tmp_path / "missing.png"
    junk = tmp_path / "junk.png"
    junk.write_bytes(np.random.default_rng(0).bytes(500))
    Image.fromarray(_rng_uint8((64, 64, 3)), "RGB").save(tmp_path / "full.png")
    full = (tmp_path / "full.png").read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(full[: len(full) // 2])
    for path in (missing, tmp_path, junk, truncated):
        with pytest.raises(ImageError) as info:
            load_image(path)
        assert str(path) in str(info.value)


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    Image.fromarray(_rng_uint8((20, 20, 3)), "RGB").save(tmp_path / "big.png")
    monkeypatch.setattr(limits, "MAX_PIXELS", 399)
    with pytest.raises(ImageError, match="pixels"):
        load_image(tmp_path / "big.png")
    monkeypatch.setattr(limits, "MAX_PIXELS", 400)
    assert load_image(tmp_path / "big.png").shape == (3, 20, 20)


def test_bad_arguments(tmp_path):
    Image.fromarray(_rng_uint8((4, 4, 3)), "RGB").save(tmp_path / "x.png")
    with pytest.raises(ConfigurationError):
        load_image(tmp_path / "x.png", mode="cmyk")
    with pytest.raises(ConfigurationError):
        load_image(tmp_path / "x.png", alpha="ignore")
    with pytest.raises(ConfigurationError):
        load_image(tmp_path / "x.png", background=(2.0, 0.0, 0.0))


# --------------------------------------------------------------------------- saving


def test_save_refuses_to_overwrite_and_force_replaces(tmp_path):
    path = tmp_path / "o.png"
    first = torch.zeros(3, 4, 4)
    second = torch.ones(3, 4, 4)
    save_image(first, path)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="force=True") as info:
        save_image(second, path)
    assert info.value.path == path
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    save_image(second, path, force=True)
    assert torch.equal(load_image(path), second)
    assert sorted(os.listdir(tmp_path)) == ["o.png"]  # no temporary files left behind


def test_save_errors(tmp_path):
    x = torch.rand(3, 4, 4)
    with pytest.raises(ImageError, match="does not exist"):
        save_image(x, tmp_path / "nope" / "a.png")
    with pytest.raises(ImageError, match="suffix"):
        save_image(x, tmp_path / "a.xyz")
    with pytest.raises(ImageError, match="channels"):
        save_image(torch.rand(2, 4, 4), tmp_path / "a.png")
    with pytest.raises(ImageError, match="alpha"):
        save_image(torch.rand(4, 4, 4), tmp_path / "a.jpg")
    with pytest.raises(ConfigurationError):
        save_image(x, tmp_path / "a.png", quality=90)
    assert os.listdir(tmp_path) == []


def test_save_inputs_and_formats(tmp_path):
    arr = _rng_uint8((6, 7, 3), seed=3)
    save_image(arr, tmp_path / "np.png")
    save_image(torch.from_numpy(arr).permute(2, 0, 1), tmp_path / "u8.bmp")
    save_image(arr[:, :, 0], tmp_path / "np_grey.tif")
    rgba = _rng_uint8((6, 7, 4), seed=4)
    save_image(rgba, tmp_path / "rgba.png")
    save_image(arr, tmp_path / "lossless.webp")
    assert np.array_equal(_read(tmp_path / "np.png"), arr)
    assert np.array_equal(_read(tmp_path / "u8.bmp"), arr)
    assert np.array_equal(_read(tmp_path / "np_grey.tif"), arr[:, :, 0])
    assert np.array_equal(_read(tmp_path / "rgba.png"), rgba)
    assert np.array_equal(_read(tmp_path / "lossless.webp", "RGB"), arr)
    save_image(torch.rand(3, 8, 8), tmp_path / "q.jpg", quality=90)
    with Image.open(tmp_path / "q.jpg") as im:
        assert im.format == "JPEG"
    # Out-of-range floats are clamped, not wrapped.
    save_image(torch.tensor([[[-0.5, 1.5]]]), tmp_path / "clamp.png")
    assert _read(tmp_path / "clamp.png").tolist() == [[0, 255]]


def test_save_animation(tmp_path):
    frames = [torch.full((3, 5, 6), v) for v in (0.0, 0.5, 1.0)]
    save_animation(frames, tmp_path / "a.gif")
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == 3 and im.size == (6, 5)
    with pytest.raises(OutputExistsError):
        save_animation(frames, tmp_path / "a.gif")


# --------------------------------------------------------------------------- conversions


def test_uint8_float_round_trip():
    u = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    f = to_float(u)
    assert f.dtype == torch.float32 and f.shape == u.shape
    assert torch.equal(to_uint8(f), u)
    x = torch.tensor([-1.0, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 3.0])
    assert to_uint8(x).tolist() == [0, 0, 0, 1, 255, 255]
    with pytest.raises(ImageError):
        to_uint8(torch.tensor([float("nan")]))
