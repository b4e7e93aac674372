"""Colour conversion and chroma resampling (8-bit scale floats, bit-identical elementwise arithmetic)."""

import pytest
import torch
import torch.nn.functional as F

from neural_collages.errors import ConfigurationError
from neural_collages.imaging.colour import downsample_2x, rgb_to_ycbcr, upsample_2x, ycbcr_to_rgb


def rgb_cube(step=(5, 3, 7), dtype=torch.float64):
    """A sample of the 8-bit RGB cube as a (3, 1, N) image."""
    v = torch.arange(256, dtype=dtype)
    r, g, b = torch.meshgrid(v[:: step[0]], v[:: step[1]], v[:: step[2]], indexing="ij")
    rgb = torch.stack([r, g, b]).reshape(3, 1, -1)
    corners = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=dtype)
    return torch.cat([rgb, corners.T.reshape(3, 1, -1)], dim=-1)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 2e-4), (torch.float32, 5e-4)])
def test_round_trip_on_8bit_values(dtype, tol):
    rgb = rgb_cube(dtype=dtype)
    back = ycbcr_to_rgb(rgb_to_ycbcr(rgb))
    assert back.shape == rgb.shape and back.dtype == dtype
    torch.testing.assert_close(back, rgb, atol=tol, rtol=0)
    assert torch.equal(back.round(), rgb)  # 8-bit values come back exactly after rounding


def test_ycbcr_round_trip_the_other_way():
    g = torch.Generator().manual_seed(0)
    ycc = torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64) * 255
    torch.testing.assert_close(rgb_to_ycbcr(ycbcr_to_rgb(ycc)), ycc, atol=2e-4, rtol=0)


def test_grey_maps_to_neutral_chroma_and_luma_equal_to_the_grey_level():
    v = torch.arange(256, dtype=torch.float64)
    grey = torch.stack([v, v, v]).reshape(3, 16, 16)
    ycc = rgb_to_ycbcr(grey)
    torch.testing.assert_close(ycc[0], v.reshape(16, 16), atol=1e-9, rtol=0)
    torch.testing.assert_close(ycc[1:], torch.full((2, 16, 16), 128.0, dtype=torch.float64), atol=1e-9, rtol=0)
    # ... and neutral chroma decodes to grey.
    back = ycbcr_to_rgb(torch.stack([v, torch.full_like(v, 128.0), torch.full_like(v, 128.0)]).reshape(3, 16, 16))
    assert torch.equal(back, grey)


def test_known_bt601_values():
    red = torch.tensor([255.0, 0.0, 0.0], dtype=torch.float64).reshape(3, 1, 1)
    y, cb, cr = rgb_to_ycbcr(red).flatten().tolist()
    assert y == pytest.approx(0.299 * 255)
    assert cb == pytest.approx(128 - 0.168736 * 255)
    assert cr == pytest.approx(255.5)  # 128 + 127.5: full range, not clamped
    white = rgb_to_ycbcr(torch.full((3, 1, 1), 255.0, dtype=torch.float64)).flatten()
    torch.testing.assert_close(white, torch.tensor([255.0, 128.0, 128.0], dtype=torch.float64))


def test_conversions_act_on_the_channel_dim_of_batches():
    g = torch.Generator().manual_seed(1)
    batch = torch.rand(4, 3, 6, 5, generator=g) * 255
    out = rgb_to_ycbcr(batch)
    assert out.shape == batch.shape
    for i in range(4):
        assert torch.equal(out[i], rgb_to_ycbcr(batch[i]))
        # each pixel independently
    assert torch.equal(out[..., 2, 3], rgb_to_ycbcr(batch[..., 2:3, 3:4])[..., 0, 0])


@pytest.mark.parametrize("shape", [(1, 4, 4), (2, 4, 4), (4, 4, 4), (2, 4, 4, 4), (2, 1, 3, 3)])
def test_conversions_reject_other_channel_counts(shape):
    with pytest.raises(ConfigurationError):
        rgb_to_ycbcr(torch.zeros(shape))
    with pytest.raises(ConfigurationError):
        ycbcr_to_rgb(torch.zeros(shape))


# ------------------------------------------------------------------ chroma resampling


def test_downsample_2x_is_the_2x2_box_average():
    g = torch.Generator().manual_seed(2)
    plane = torch.rand(2, 3, 8, 10, generator=g, dtype=torch.float64) * 255
    out = downsample_2x(plane)
    assert out.shape == (2, 3, 4, 5)
    torch.testing.assert_close(out, F.avg_pool2d(plane, 2), atol=1e-12, rtol=0)
    assert downsample_2x(torch.zeros(6, 2)).shape == (3, 1)


@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (2, 5, 5), (1, 1)])
def test_downsample_2x_needs_even_sizes(shape):
    with pytest.raises(ConfigurationError):
        downsample_2x(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(4, 6), (1, 1), (1, 5), (2, 3, 4), (2, 2, 3, 7)])
def test_upsample_2x_doubles_the_last_two_dims(shape):
    out = upsample_2x(torch.rand(shape))
    assert out.shape == (*shape[:-2], 2 * shape[-2], 2 * shape[-1])


@pytest.mark.parametrize("value", [0.0, 1.0, 128.0, 255.0, 37.0])
def test_constant_planes_are_invariant(value):
    plane = torch.full((2, 6, 8), value)
    assert torch.equal(upsample_2x(plane), torch.full((2, 12, 16), value))
    assert torch.equal(downsample_2x(plane), torch.full((2, 3, 4), value))


def test_constant_planes_with_arbitrary_values_stay_constant_to_rounding():
    g = torch.Generator().manual_seed(3)
    for value in (torch.rand(5, generator=g, dtype=torch.float64) * 255).tolist():
        plane = torch.full((4, 4), value, dtype=torch.float64)
        torch.testing.assert_close(upsample_2x(plane), torch.full((8, 8), value, dtype=torch.float64),
                                   atol=1e-12, rtol=0)


def test_upsample_2x_triangle_filter_weights():
    x = torch.tensor([[0.0, 4.0, 8.0, 40.0]])
    up = upsample_2x(x)
    assert up.shape == (2, 8)
    # Along the row: even sample 2i = 3/4 x_i + 1/4 x_{i−1}, odd 2i+1 = 3/4 x_i + 1/4 x_{i+1}, edges replicated.
    expected_row = [0.0, 1.0, 3.0, 5.0, 7.0, 16.0, 32.0, 40.0]
    assert up[0].tolist() == expected_row and up[1].tolist() == expected_row


def test_upsample_then_downsample_preserves_linear_ramps_away_from_the_edges():
    y, x = torch.meshgrid(torch.arange(8.0), torch.arange(10.0), indexing="ij")
    ramp = 7 * y - 3 * x + 100
    back = downsample_2x(upsample_2x(ramp))
    assert torch.equal(back[1:-1, 1:-1], ramp[1:-1, 1:-1])


def test_upsample_is_separable_and_symmetric():
    g = torch.Generator().manual_seed(4)
    plane = torch.rand(5, 7, generator=g, dtype=torch.float64)
    torch.testing.assert_close(upsample_2x(plane.T), upsample_2x(plane).T, atol=1e-15, rtol=0)
    torch.testing.assert_close(upsample_2x(plane.flip(-1)), upsample_2x(plane).flip(-1), atol=1e-15, rtol=0)


def test_results_are_identical_across_thread_counts():
    g = torch.Generator().manual_seed(5)
    rgb = torch.rand(2, 3, 256, 384, generator=g) * 255
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            ycc = rgb_to_ycbcr(rgb)
            chroma = downsample_2x(ycc[:, 1:])
            up = upsample_2x(chroma)
            results.append((ycc, chroma, up, ycbcr_to_rgb(torch.cat([ycc[:, :1], up], 1))))
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*results):
        assert torch.equal(one, two)


@pytest.mark.parametrize("factor", [1, 2])
@pytest.mark.parametrize("rows", [1, 2, 5, 64])
@pytest.mark.parametrize("size", [(13, 9), (16, 16), (7, 30)])
def test_conversion_in_strips_equals_the_whole_image_conversion(factor, rows, size):
    from neural_collages.imaging.colour import planes_to_rgb_in_strips

    H, W = size
    g = torch.Generator().manual_seed(H * W + factor)
    h, w = -(-H // factor), -(-W // factor)
    luma = torch.rand(h * factor + 1, w * factor + 2, generator=g) * 255  # planes may be padded
    chroma = torch.rand(2, h, w, generator=g) * 255
    up = upsample_2x(chroma) if factor == 2 else chroma
    whole = ycbcr_to_rgb(torch.cat([luma[None, :H, :W], up[:, :H, :W]]))
    strips = planes_to_rgb_in_strips(luma, chroma, (H, W), ycbcr_to_rgb, factor=factor, strip_rows=rows)
    assert strips.shape == (3, H, W) and torch.equal(strips, whole)
    # Chroma as two planes (stacked a strip at a time, never whole): the same image.
    pair = planes_to_rgb_in_strips(luma, (chroma[0], chroma[1]), (H, W), ycbcr_to_rgb, factor=factor, strip_rows=rows)
    assert torch.equal(pair, whole)
