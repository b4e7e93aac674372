import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as reference_ms_ssim

from neural_collages.imaging import metrics
from neural_collages.errors import ConfigurationError
from neural_collages.imaging.io import to_float, to_uint8
from neural_collages.imaging.metrics import bd_psnr, bd_rate, bits_per_pixel, bits_per_subpixel, ms_ssim, psnr


def _image(h, w, c=3, seed=0):
    """A smooth gradient with some texture, so SSIM has structure to compare."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = 0.5 + 0.3 * torch.sin(6 * xx + 4 * yy)
    texture = 0.15 * torch.rand(c, h, w, generator=g)
    return (base + texture - 0.075).clamp(0, 1)


def _noisy(x, sigma, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


# --------------------------------------------------------------------------- PSNR


def test_psnr_known_value():
    ref = torch.full((3, 8, 8), 100, dtype=torch.uint8)
    test = ref + 1
    assert float(psnr(ref, test)) == pytest.approx(20 * math.log10(255), abs=1e-9)
    # Same with floats: an error of exactly one 8-bit level everywhere.
    assert float(psnr(to_float(ref), to_float(test))) == pytest.approx(20 * math.log10(255), abs=1e-9)
    # MSE of 4 levels^2 -> 6 dB less.
    assert float(psnr(ref, ref + 2)) == pytest.approx(20 * math.log10(255) - 20 * math.log10(2), abs=1e-9)


def test_psnr_is_measured_on_rounded_8_bit_values():
    x = torch.full((1, 4, 4), 100 / 255)
    y = x + 0.3 / 255  # rounds to the same 8-bit level
    assert math.isinf(float(psnr(x, y))) and float(psnr(x, y)) > 0
    assert math.isinf(float(psnr(x, x)))
    z = x + 0.7 / 255  # rounds to the next level
    assert float(psnr(x, z)) == pytest.approx(20 * math.log10(255), abs=1e-9)
    # Values outside [0, 1] are clamped like a saved image would be.
    assert math.isinf(float(psnr(torch.ones(1, 2, 2), torch.full((1, 2, 2), 1.7))))


def test_psnr_data_range():
    ref = torch.full((1, 4, 4), 100.0)
    assert float(psnr(ref, ref + 1, data_range=255.0)) == pytest.approx(20 * math.log10(255), abs=1e-9)


def test_psnr_batch_shape_and_per_image_values():
    ref = torch.full((3, 1, 4, 4), 50, dtype=torch.uint8)
    test = ref.clone()
    test[1] += 1
    test[2] += 10
    values = psnr(ref, test)
    assert values.shape == (3,)
    assert math.isinf(float(values[0]))
    assert float(values[1]) == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert float(values[2]) == pytest.approx(20 * math.log10(25.5), abs=1e-9)
    assert psnr(ref[0], test[1]).shape == ()


def test_psnr_errors():
    with pytest.raises(ConfigurationError):
        psnr(torch.rand(3, 4, 4), torch.rand(3, 4, 5))
    with pytest.raises(ConfigurationError):
        psnr(torch.rand(4, 4), torch.rand(4, 4))
    with pytest.raises(ConfigurationError):
        psnr(torch.rand(3, 4, 4), torch.rand(3, 4, 4), data_range=0)


# --------------------------------------------------------------------------- MS-SSIM


@pytest.mark.parametrize("size", [(8, 8), (64, 64), (256, 256), (5, 40), (1, 1), (20, 170)])
def test_ms_ssim_identical_is_one_and_noise_lowers_it(size):
    x = _image(*size)
    assert float(ms_ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    values = [float(ms_ssim(x, _noisy(x, s))) for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(v < 1.0 for v in values)
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values), values
    assert all(0.0 <= v for v in values)


def test_ms_ssim_matches_pytorch_msssim_for_large_images():
    # Inputs already on the 8-bit grid, so the rounding ms_ssim does changes nothing.
    x = to_float(to_uint8(_image(176, 200, seed=3)))
    y = to_float(to_uint8(_noisy(x, 0.05)))
    ours = ms_ssim(x, y)
    theirs = reference_ms_ssim(x[None], y[None], data_range=1.0)
    assert ours.shape == ()
    assert float(ours) == pytest.approx(float(theirs), abs=1e-6)
    # The fewer-scales code path reproduces the library exactly at 5 scales.
    own = metrics._multiscale_ssim(x[None], y[None], 5)
    assert float(own[0]) == pytest.approx(float(theirs), abs=1e-5)


def test_ms_ssim_scale_rule():
    assert metrics._num_scales(161, 400) == 5
    assert metrics._num_scales(160, 400) == 4
    assert metrics._num_scales(64, 64) == 3
    assert metrics._num_scales(11, 11) == 1
    assert metrics._num_scales(10, 300) == 0


def test_ms_ssim_rounds_to_8_bit_and_batches():
    x = to_float(to_uint8(_image(32, 32)))
    assert float(ms_ssim(x, x + 0.3 / 255)) == pytest.approx(1.0, abs=1e-6)
    batch_ref = torch.stack([x, x])
    batch_test = torch.stack([x, _noisy(x, 0.1)])
    values = ms_ssim(batch_ref, batch_test)
    assert values.shape == (2,)
    assert float(values[0]) == pytest.approx(1.0, abs=1e-5) and float(values[1]) < 0.99
    assert float(values[1]) == pytest.approx(float(ms_ssim(x, batch_test[1])), abs=1e-6)
    grey = _image(16, 16, c=1)
    assert float(ms_ssim(grey, _noisy(grey, 0.1))) < 1.0
    with pytest.raises(ConfigurationError):
        ms_ssim(x, x[:, :16])


# --------------------------------------------------------------------------- rates


def test_bits_per_pixel_and_subpixel():
    assert bits_per_pixel(1200, 10, 20) == 6.0
    assert bits_per_subpixel(1200, 10, 20) == 2.0
    assert bits_per_subpixel(1200, 10, 20, channels=1) == 6.0
    with pytest.raises(ConfigurationError):
        bits_per_pixel(10, 0, 5)
    with pytest.raises(ConfigurationError):
        bits_per_pixel(-1, 5, 5)


# --------------------------------------------------------------------------- Bjøntegaard

RATES = [0.1, 0.2, 0.4, 0.8, 1.6]
PSNRS = [28.0, 31.0, 33.5, 35.5, 37.0]


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_identical_curves(method):
    assert bd_rate(RATES, PSNRS, RATES, PSNRS, method=method) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(RATES, PSNRS, RATES, PSNRS, method=method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_halved_rates(method):
    half = [r / 2 for r in RATES]
    assert bd_rate(RATES, PSNRS, half, PSNRS, method=method) == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(half, PSNRS, RATES, PSNRS, method=method) == pytest.approx(100.0, abs=1e-9)
    # At equal rate the cheaper codec has the higher PSNR.
    assert bd_psnr(RATES, PSNRS, half, PSNRS, method=method) > 0


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_psnr_shifted_curve(method):
    better = [q + 1.0 for q in PSNRS]
    assert bd_psnr(RATES, PSNRS, RATES, better, method=method) == pytest.approx(1.0, abs=1e-9)
    assert bd_psnr(RATES, better, RATES, PSNRS, method=method) == pytest.approx(-1.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, RATES, better, method=method) < 0


def test_bd_order_does_not_matter():
    order = [3, 0, 4, 1, 2]
    shuffled_r = [RATES[i] for i in order]
    shuffled_q = [PSNRS[i] for i in order]
    test_r = [r * 0.7 for r in RATES]
    test_q = [q + 0.2 for q in PSNRS]
    for fn in (bd_rate, bd_psnr):
        expected = fn(RATES, PSNRS, test_r, test_q)
        assert fn(shuffled_r, shuffled_q, test_r, test_q) == pytest.approx(expected, abs=1e-12)
        assert fn(RATES, PSNRS, test_r[::-1], test_q[::-1]) == pytest.approx(expected, abs=1e-12)


def test_bd_partial_overlap():
    # PSNR linear in log-rate: both interpolants reproduce the line exactly, so only the
    # overlap [31, 37] dB matters and the test curve is exactly 20% cheaper there.
    rates = [0.1, 0.2, 0.4, 0.8, 1.6]
    psnrs = [25 + 10 * math.log10(r / 0.1) for r in rates]
    test_r = [0.8 * r for r in rates[2:]] + [3.2 * 0.8]
    test_q = psnrs[2:] + [25 + 10 * math.log10(32)]
    assert bd_rate(rates, psnrs, test_r, test_q) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(rates, psnrs, test_r, test_q, method="cubic") == pytest.approx(-20.0, abs=1e-9)
    assert bd_psnr(rates, psnrs, test_r, test_q) == pytest.approx(10 * math.log10(1 / 0.8), abs=1e-9)


def test_pchip_slopes_and_integral_by_hand():
    # Fritsch-Carlson slopes for y = 0 1 1 2: zero at the flat interior (local "extremum" of the
    # secants), the three-point end rule ((2h0 + h1) m0 - h0 m1) / (h0 + h1) = 1.5 at the ends.
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([0.0, 1.0, 1.0, 2.0])
    assert metrics._pchip_slopes(x, y).tolist() == [1.5, 0.0, 0.0, 1.5]
    # Pieces 1.5s - 0.5s^3, 1, 1 + 1.5s^2 - 0.5s^3 integrate to 0.625 + 1 + 1.375.
    assert metrics._pchip_integral(x, y, 0.0, 3.0) == pytest.approx(3.0, abs=1e-12)
    assert metrics._pchip_integral(x, y, 1.0, 2.0) == pytest.approx(1.0, abs=1e-12)
    assert metrics._pchip_integral(x, y, 0.0, 1.0) == pytest.approx(0.625, abs=1e-12)


def test_bd_pchip_integral_is_exact_for_a_line():
    x = torch.tensor([0.0, 1.0, 3.0, 4.0]).numpy()
    y = 2 * x + 1
    # Integral of 2x + 1 over [0.5, 3.5] = [x^2 + x] = 15.75 - 0.75 = 15
    assert metrics._pchip_integral(x, y, 0.5, 3.5) == pytest.approx(15.0, abs=1e-12)


def test_bd_two_point_curves():
    assert bd_rate([1, 2], [30, 33], [0.5, 1.0], [30, 33]) == pytest.approx(-50.0, abs=1e-9)
    assert bd_psnr([1, 2], [30, 33], [1, 2], [31, 34]) == pytest.approx(1.0, abs=1e-9)


def test_bd_errors():
    with pytest.raises(ConfigurationError, match="at least 2"):
        bd_rate([1.0], [30.0], RATES, PSNRS)
    with pytest.raises(ConfigurationError, match="at least 2"):
        bd_psnr(RATES, PSNRS, [1.0], [30.0])
    with pytest.raises(ConfigurationError, match="overlap"):
        bd_rate([0.1, 0.2], [20.0, 22.0], [0.1, 0.2], [30.0, 32.0])
    with pytest.raises(ConfigurationError, match="overlap"):
        bd_psnr([0.1, 0.2], [20.0, 22.0], [1.0, 2.0], [20.0, 22.0])
    with pytest.raises(ConfigurationError):
        bd_rate([0.1, 0.2, 0.3], [20.0, 22.0], RATES, PSNRS)
    with pytest.raises(ConfigurationError):
        bd_rate([0.0, 0.2], [20.0, 22.0], RATES, PSNRS)
    with pytest.raises(ConfigurationError):
        bd_rate(RATES, PSNRS, RATES, PSNRS, method="linear")
