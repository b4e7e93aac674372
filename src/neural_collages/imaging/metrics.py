"""Image quality and rate metrics: PSNR, MS-SSIM, bits per (sub)pixel and Bjøntegaard deltas.

PSNR and MS-SSIM are measured on 8-bit images, as codecs are usually compared: float inputs in
``[0, data_range]`` are rounded to 8 bit first (:func:`~neural_collages.imaging.io.to_uint8`), so
a decoder's output is scored as it would be after saving it to a PNG.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as _pm_ms_ssim

from ..errors import ConfigurationError
from .io import to_float, to_uint8

__all__ = [
    "psnr",
    "ms_ssim",
    "bits_per_pixel",
    "bits_per_subpixel",
    "bd_rate",
    "bd_psnr",
]

# The standard MS-SSIM setting (Wang et al. 2003), also pytorch-msssim's default.
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN_SIZE = 11
_WIN_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def _as_uint8_pair(reference: torch.Tensor, test: torch.Tensor, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(data_range, (int, float)) and data_range > 0 and math.isfinite(data_range)):
        raise ConfigurationError(f"data_range must be a positive number, got {data_range!r}")
    if not isinstance(reference, torch.Tensor) or not isinstance(test, torch.Tensor):
        raise ConfigurationError("reference and test must be torch tensors")
    if reference.shape != test.shape:
        raise ConfigurationError(
            f"reference and test differ in shape: {tuple(reference.shape)} vs {tuple(test.shape)}"
        )
    if reference.ndim not in (3, 4) or reference.numel() == 0:
        raise ConfigurationError(
            f"expected images (C, H, W) or batches (B, C, H, W), got shape {tuple(reference.shape)}"
        )

    def convert(x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return x
        if not x.is_floating_point():
            raise ConfigurationError(f"images must be floating point or uint8, got {x.dtype}")
        return to_uint8(x / data_range if data_range != 1.0 else x)

    return convert(reference), convert(test)


def psnr(reference: torch.Tensor, test: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of ``test`` against ``reference``, on 8-bit values.

    Float inputs in ``[0, data_range]`` are rounded to 8 bit first; ``uint8`` inputs are used as
    they are. The peak is 255. ``(C, H, W)`` inputs give a 0-d tensor, ``(B, C, H, W)`` a tensor
    of shape ``(B,)`` (one value per image, not the PSNR of the mean error). Identical images
    give ``inf``. The result is ``float64``.
    """
    ref8, test8 = _as_uint8_pair(reference, test, data_range)
    diff = ref8.to(torch.float64) - test8.to(torch.float64)
    mse = diff.square().flatten(-3).mean(-1)
    # 255**2 / 0 is +inf, whose log is +inf: identical images need no special case.
    return 10.0 * torch.log10((255.0**2) / mse)


def _gauss_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size // 2)
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel SSIM and contrast-structure terms, ``(B, C)`` each (valid Gaussian filtering,
    data range 1), the same formulas as pytorch-msssim."""
    C = x.shape[1]
    k = win.numel()
    wh = win.view(1, 1, k, 1).repeat(C, 1, 1, 1)
    ww = win.view(1, 1, 1, k).repeat(C, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, wh, groups=C), ww, groups=C)

    c1, c2 = _K1**2, _K2**2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x * mu_x
    syy = blur(y * y) - mu_y * mu_y
    sxy = blur(x * y) - mu_x * mu_y
    cs_map = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = ((2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def _num_scales(height: int, width: int) -> int:
    """Most scales (≤ 5) whose coarsest level is still at least the 11-px window on both sides."""
    side = min(height, width)
    levels = 0
    while levels < len(_MS_SSIM_WEIGHTS) and side >= _WIN_SIZE:
        levels += 1
        side = (side + 1) // 2  # 2x2 average pooling with pytorch-msssim's odd-size padding
    return levels


def _multiscale_ssim(x: torch.Tensor, y: torch.Tensor, levels: int) -> torch.Tensor:
    """MS-SSIM ``(B,)`` over ``levels`` scales with the first standard weights renormalised;
    for 5 levels this is exactly pytorch-msssim's computation."""
    weights = torch.tensor(_MS_SSIM_WEIGHTS[:levels], dtype=x.dtype, device=x.device)
    weights = weights / weights.sum()
    win = _gauss_window(_WIN_SIZE, _WIN_SIGMA, x.dtype, x.device)
    terms = []
    for level in range(levels):
        ssim_c, cs_c = _ssim_and_cs(x, y, win)
        if level < levels - 1:
            terms.append(torch.relu(cs_c))
            padding = [s % 2 for s in x.shape[-2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    terms.append(torch.relu(ssim_c))
    stacked = torch.stack(terms, 0)  # (levels, B, C)
    return torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean(1)


def ms_ssim(reference: torch.Tensor, test: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Multi-scale SSIM of ``test`` against ``reference``, on 8-bit rounded values (as :func:`psnr`).

    Uses the standard setting (11-px Gaussian window, sigma 1.5, 5 scales with Wang et al.'s
    weights, computed by pytorch-msssim) when the smaller image side exceeds 160 px. Smaller
    images use fewer scales, as many as keep the coarsest level at least 11 px on each side
    (e.g. 3 scales for 64 px), with the first weights renormalised to sum to 1; a single scale
    is plain SSIM. Below 11 px, SSIM with the largest odd window that fits (sigma scaled by
    window/11) is used. Negative per-scale terms are clipped at 0, as pytorch-msssim does.
    Returns ``float32``: a 0-d tensor for ``(C, H, W)``, shape ``(B,)`` for ``(B, C, H, W)``.
    """
    ref8, test8 = _as_uint8_pair(reference, test, data_range)
    single = ref8.ndim == 3
    x = to_float(ref8.unsqueeze(0) if single else ref8)
    y = to_float(test8.unsqueeze(0) if single else test8)
    H, W = x.shape[-2:]
    levels = _num_scales(H, W)

    if levels == len(_MS_SSIM_WEIGHTS):
        value = _pm_ms_ssim(
            x, y, data_range=1.0, size_average=False, win_size=_WIN_SIZE, win_sigma=_WIN_SIGMA,
            weights=list(_MS_SSIM_WEIGHTS),
        )
    elif levels == 0:
        size = min(H, W)
        size -= 1 - size % 2  # largest odd window that fits
        win = _gauss_window(size, _WIN_SIGMA * size / _WIN_SIZE, x.dtype, x.device)
        ssim_c, _ = _ssim_and_cs(x, y, win)
        value = torch.relu(ssim_c).mean(1)
    else:
        value = _multiscale_ssim(x, y, levels)
    return value[0] if single else value


def bits_per_pixel(num_bits: float, height: int, width: int) -> float:
    """Rate in bits per pixel: ``num_bits / (height * width)``."""
    _check_rate_args(num_bits, height, width, 1)
    return float(num_bits) / (height * width)


def bits_per_subpixel(num_bits: float, height: int, width: int, channels: int = 3) -> float:
    """Rate in bits per subpixel, ``num_bits / (height * width * channels)`` (the Neural Collages
    paper's convention; a third of bits per pixel for RGB)."""
    _check_rate_args(num_bits, height, width, channels)
    return float(num_bits) / (height * width * channels)


def _check_rate_args(num_bits, height, width, channels) -> None:
    if not (isinstance(num_bits, (int, float, np.integer, np.floating)) and num_bits >= 0 and math.isfinite(num_bits)):
        raise ConfigurationError(f"num_bits must be a non-negative number, got {num_bits!r}")
    for name, value in (("height", height), ("width", width), ("channels", channels)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")


# --------------------------------------------------------------------------- Bjøntegaard deltas


def _curve(rates: Sequence[float], psnrs: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        r = np.asarray(rates, dtype=np.float64).reshape(-1)
        q = np.asarray(psnrs, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{name} curve: rates and PSNRs must be numbers ({exc})") from None
    if r.size != q.size:
        raise ConfigurationError(f"{name} curve: {r.size} rates but {q.size} PSNR values")
    if r.size < 2:
        raise ConfigurationError(f"{name} curve: need at least 2 rate-distortion points, got {r.size}")
    if not (np.isfinite(r).all() and np.isfinite(q).all()):
        raise ConfigurationError(f"{name} curve: rates and PSNRs must be finite")
    if (r <= 0).any():
        raise ConfigurationError(f"{name} curve: rates must be positive")
    return np.log10(r), q


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson derivatives of the monotone piecewise cubic Hermite interpolant
    (the same rule as SciPy's ``PchipInterpolator``); ``x`` strictly increasing."""
    h = np.diff(x)
    m = np.diff(y) / h
    n = x.size
    if n == 2:
        return np.array([m[0], m[0]])
    d = np.zeros(n)
    # Interior: weighted harmonic mean of the neighbouring secants, 0 at local extrema.
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    same_sign = (np.sign(m[:-1]) * np.sign(m[1:])) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / m[:-1] + w2 / m[1:])
    d[1:-1] = np.where(same_sign, harmonic, 0.0)
    d[0] = _pchip_end_slope(h[0], h[1], m[0], m[1])
    d[-1] = _pchip_end_slope(h[-1], h[-2], m[-1], m[-2])
    return d


def _pchip_end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    # Three-point, shape-preserving end condition.
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over ``[lo, hi]`` (inside ``[x[0], x[-1]]``) of the PCHIP through (x, y)."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(x.size - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        m = (y[k + 1] - y[k]) / h
        # Cubic in s = t - x[k]: y_k + d_k s + c2 s^2 + c3 s^3.
        c2 = (3 * m - 2 * d[k] - d[k + 1]) / h
        c3 = (d[k] + d[k + 1] - 2 * m) / h**2

        def antiderivative(s: float) -> float:
            return y[k] * s + d[k] * s**2 / 2 + c2 * s**3 / 3 + c3 * s**4 / 4

        total += antiderivative(b - x[k]) - antiderivative(a - x[k])
    return total


def _poly_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    # Bjøntegaard's original VCEG-M33 fit: a cubic (lower degree for fewer points) least squares.
    coeffs = np.polyfit(x, y, min(3, x.size - 1))
    antiderivative = np.polyint(coeffs)
    return float(np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo))


def _mean_difference(
    x_anchor: np.ndarray, y_anchor: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, method: str, axis: str
) -> float:
    """Mean over the overlapping x interval of (test curve - anchor curve), curves as y(x)."""
    if method not in ("pchip", "cubic"):
        raise ConfigurationError(f"method must be 'pchip' or 'cubic', got {method!r}")
    curves = []
    for name, x, y in (("anchor", x_anchor, y_anchor), ("test", x_test, y_test)):
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        if (np.diff(x) <= 0).any():
            raise ConfigurationError(f"{name} curve: repeated {axis} values; each point needs a distinct {axis}")
        curves.append((x, y))
    (xa, ya), (xt, yt) = curves
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if not hi > lo:
        raise ConfigurationError(
            f"the two curves do not overlap in {axis} ({xa[0]:.4g}..{xa[-1]:.4g} vs {xt[0]:.4g}..{xt[-1]:.4g})"
        )
    integral = _pchip_integral if method == "pchip" else _poly_integral
    return (integral(xt, yt, lo, hi) - integral(xa, ya, lo, hi)) / (hi - lo)


def bd_rate(
    rate_anchor: Sequence[float],
    psnr_anchor: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Bjøntegaard delta rate in percent: the average rate change of the test codec against the
    anchor at equal PSNR (negative: the test needs fewer bits).

    log10(rate) is interpolated as a function of PSNR on each curve and the mean difference is
    taken over the PSNR interval both curves cover. ``method="pchip"`` (default) uses piecewise
    cubic Hermite interpolation, as modern implementations do; ``"cubic"`` the original cubic
    polynomial fit. Each curve needs at least 2 points with distinct PSNRs; points may come
    in any order. Raises :class:`ConfigurationError` otherwise or when the curves do not overlap.
    """
    log_ra, qa = _curve(rate_anchor, psnr_anchor, "anchor")
    log_rt, qt = _curve(rate_test, psnr_test, "test")
    diff = _mean_difference(qa, log_ra, qt, log_rt, method, "PSNR")
    return float((10.0**diff - 1.0) * 100.0)


def bd_psnr(
    rate_anchor: Sequence[float],
    psnr_anchor: Sequence[float],
    rate_test: Sequence[float],
    psnr_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Bjøntegaard delta PSNR in dB: the average PSNR gain of the test codec over the anchor at
    equal rate (positive: the test is better).

    PSNR is interpolated as a function of log10(rate) and averaged over the log-rate interval
    both curves cover; ``method`` and the requirements are as for :func:`bd_rate`.
    """
    log_ra, qa = _curve(rate_anchor, psnr_anchor, "anchor")
    log_rt, qt = _curve(rate_test, psnr_test, "test")
    return float(_mean_difference(log_ra, qa, log_rt, qt, method, "rate"))
