"""Colour spaces and chroma resampling for the codecs.

Everything here is written as plain elementwise torch arithmetic (no matmul, no reductions, no
fused multiply-adds), so on any IEEE-754 machine the results are bit-identical: decoders use it.
Values are on the 8-bit scale ``[0, 255]`` (floats), as codecs quantise in those units.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import ConfigurationError
from .tensors import empty_image


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """Full-range BT.601 (JPEG/JFIF) YCbCr of ``(..., 3, H, W)`` RGB in ``[0, 255]``."""
    if rgb.dim() < 3 or rgb.shape[-3] != 3:
        raise ConfigurationError(f"expected 3 colour channels, got shape {tuple(rgb.shape)}")
    r, g, b = rgb.unbind(-3)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return torch.stack([y, cb, cr], dim=-3)


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (not clamped)."""
    if ycc.dim() < 3 or ycc.shape[-3] != 3:
        raise ConfigurationError(f"expected 3 colour channels, got shape {tuple(ycc.shape)}")
    y, cb, cr = ycc.unbind(-3)
    cb = cb - 128.0
    cr = cr - 128.0
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return torch.stack([r, g, b], dim=-3)


def downsample_2x(plane: torch.Tensor) -> torch.Tensor:
    """2×2 box average of ``(..., H, W)`` with even ``H`` and ``W`` (4:2:0 chroma)."""
    H, W = plane.shape[-2:]
    if H % 2 or W % 2:
        raise ConfigurationError(f"downsample_2x needs even sizes, got {H}x{W}")
    rows = plane[..., 0::2, :] + plane[..., 1::2, :]
    return (rows[..., 0::2] + rows[..., 1::2]) * 0.25


def upsample_2x(plane: torch.Tensor) -> torch.Tensor:
    """Double ``(..., H, W)`` with the separable triangle filter (weights 3/4 and 1/4, edges replicated).

    This is the interpolation of centred 2×2 samples (as JPEG decoders do for 4:2:0 chroma). It is
    not an exact inverse of :func:`downsample_2x`: a 2×2 box average of its output is the input
    smoothed by ``(1/8, 3/4, 1/8)`` along each axis (exact for linear ramps).
    """
    return _upsample_axis(_upsample_axis(plane, -2), -1)


def _upsample_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim=dim)
    nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim=dim)
    even = 0.75 * x + 0.25 * prev
    odd = 0.75 * x + 0.25 * nxt
    # Interleave: even samples at 2i, odd samples at 2i + 1.
    shape = list(x.shape)
    axis = dim % x.dim()
    shape[axis] = 2 * n
    return torch.stack([even, odd], dim=axis + 1).reshape(shape)


def planes_to_rgb_in_strips(
    luma: torch.Tensor,
    chroma: torch.Tensor,
    size: tuple[int, int],
    convert: Callable[[torch.Tensor], torch.Tensor],
    factor: int = 2,
    strip_rows: int = 256,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(3, H, W)`` from a luma plane ``(≥H, ≥W)`` and chroma ``(2, h, w)`` (``factor`` 2: 4:2:0, 1: 4:4:4).

    ``chroma`` may also be a pair of ``(h, w)`` planes, stacked a strip at a time (no copy of both).

    ``convert`` maps a ``(3, rows, cols)`` YCbCr strip (chroma already upsampled) to RGB. The image
    is converted ``strip_rows`` chroma rows at a time, so temporaries stay a few strips however
    large the output. Upsampling reads one chroma row above and below, so each strip takes a
    one-row halo: every pixel is computed exactly as in a whole-image conversion (bit-identical).

    ``dtype`` is that of ``convert``'s output (the image is allocated by :func:`empty_image`).
    """
    if factor not in (1, 2):
        raise ConfigurationError(f"chroma factor must be 1 or 2, got {factor!r}")
    H, W = size
    out = empty_image(3, H, W, dtype)
    if isinstance(chroma, (tuple, list)):
        if len(chroma) != 2 or chroma[0].shape != chroma[1].shape:
            raise ConfigurationError("chroma must be a (2, h, w) tensor or two (h, w) planes of one size")
        rows = chroma[0].shape[-2]
    else:
        rows = chroma.shape[-2]
    halo = factor - 1
    for c0 in range(0, rows, strip_rows):
        c1 = min(rows, c0 + strip_rows)
        r0, r1 = factor * c0, min(H, factor * c1)
        if r0 >= r1:
            break
        lo, hi = max(0, c0 - halo), min(rows, c1 + halo)
        part = torch.stack([chroma[0][lo:hi], chroma[1][lo:hi]]) if isinstance(chroma, (tuple, list)) else chroma[:, lo:hi]
        if factor == 2:
            part = upsample_2x(part)
        part = part[:, factor * (c0 - lo) : factor * (c1 - lo)]
        ycc = torch.cat([luma[None, r0:r1, :W], part[:, : r1 - r0, :W]], 0)
        out[:, r0:r1] = convert(ycc)
    return out
