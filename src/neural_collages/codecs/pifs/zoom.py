"""Zoomed PIFS decodes of version-4 files: an interpolated 1x decode plus a share of fractal detail.

Decoded at scale s, a fractal code invents detail finer than its 1× pixels (its ranges are
rebuilt from domains twice their size). Against a true large image that detail is only partly
right: the plain s× fractal decode lost 0.3–0.45 dB to Lanczos upscaling of the same file's 1×
decode on six large photos, while a quarter of it added to an interpolated 1× decode beat
Lanczos (``benchmarks/zoom.py``; docs/pifs.md). So a version-4 file's s× plane is

    Z = α·F_s + C((1 − α)·F_1 + r)

with ``F_s`` and ``F_1`` the (deblocked) s× and 1× fractal decodes, ``r`` the 1× residual layer
(zero without one), ``C`` separable Keys cubic interpolation (a = −½) and ``α`` the file's
``zoom`` parameter in sixteenths. Since ``C`` is linear this is ``C(x₁) + α·(F_s − C(F_1))``: the
interpolated 1× decode plus the part of the fractal's own zoom that interpolation does not give.
Pooling ``Z`` gives the 1× decode only approximately (the interpolation is not pooling-exact).

Determinism: fixed-order elementwise multiply-adds on float32, as the rest of the decoder.
"""

from __future__ import annotations

import math

import torch

#: Keys' cubic convolution parameter (Catmull–Rom).
KEYS_A = -0.5
#: Rows of the 1x plane interpolated at a time: temporaries stay strips of the s× plane.
STRIP_ROWS = 32
#: Neighbours a cubic tap may reach on either side (phases lie within half a pixel).
HALO = 2


def _keys(d: float) -> float:
    d = abs(d)
    if d <= 1.0:
        return (KEYS_A + 2.0) * d**3 - (KEYS_A + 3.0) * d**2 + 1.0
    if d < 2.0:
        return KEYS_A * (d**3 - 5.0 * d**2 + 8.0 * d - 4.0)
    return 0.0


def cubic_phases(scale: int) -> list[list[tuple[int, float]]]:
    """Per output phase t of an s× upsampling: its taps (source offset −2 … 2, weight); output t of
    source pixel i sits at ``i + (t + ½)/s − ½``."""
    phases = []
    for t in range(scale):
        pos = (t + 0.5) / scale - 0.5
        base = math.floor(pos)
        frac = pos - base
        taps = [(base + k, _keys(frac - k)) for k in (-1, 0, 1, 2)]
        phases.append([(offset, w) for offset, w in taps if w != 0.0])
    return phases


def shifted(x: torch.Tensor, dim: int, offset: int) -> torch.Tensor:
    """``x`` moved by ``offset`` samples along ``dim`` (edge samples repeated)."""
    n = x.shape[dim]
    if offset == 0:
        return x
    index = torch.arange(offset, n + offset).clamp_(0, n - 1)
    return x.index_select(dim, index)


def upsample_axis(x: torch.Tensor, dim: int, phases: list[list[tuple[int, float]]]) -> torch.Tensor:
    """``x`` upsampled ``len(phases)``× along ``dim``: output phase t is the sum, in tap order, of
    ``shifted(x, offset) · weight`` over ``phases[t]`` (fixed-order elementwise arithmetic)."""
    outs = []
    for taps in phases:
        acc = None
        for offset, w in taps:
            term = shifted(x, dim, offset) * w
            acc = term if acc is None else acc + term
        outs.append(acc)
    axis = dim % x.dim()
    shape = list(x.shape)
    shape[axis] *= len(phases)
    return torch.stack(outs, dim=axis + 1).reshape(shape)


def add_interpolated(plane: torch.Tensor, base: torch.Tensor, scale: int) -> None:
    """``plane += C(base)`` in place, ``plane`` the top-left ``(≤ s·H, ≤ s·W)`` of the s× grid of ``base``."""
    H = base.shape[0]
    rows_out, cols_out = plane.shape
    phases = cubic_phases(scale)
    for y0 in range(0, -(-rows_out // scale), STRIP_ROWS):
        y1 = min(H, y0 + STRIP_ROWS)
        lo, hi = max(0, y0 - HALO), min(H, y1 + HALO)
        up = upsample_axis(upsample_axis(base[lo:hi], 1, phases), 0, phases)
        part = up[(y0 - lo) * scale:(y1 - lo) * scale]
        r0, r1 = y0 * scale, min(rows_out, y1 * scale)
        plane[r0:r1] += part[: r1 - r0, :cols_out]


def detail_zoom(plane: torch.Tensor, fractal_1x: torch.Tensor, residual: torch.Tensor | None, scale: int,
                detail_sixteenths: int) -> None:
    """Turn the s× fractal decode ``plane`` (cropped to s× the plane's size) into ``Z`` (module
    docstring) in place, from the padded 1× fractal decode and residual (None: no layer)."""
    alpha = detail_sixteenths / 16.0
    rows, cols = -(-plane.shape[0] // scale), -(-plane.shape[1] // scale)
    plane.mul_(alpha)
    # Interpolate the true plane only: at its borders edge samples repeat, not the padding's decode.
    base = fractal_1x[:rows, :cols] * (1.0 - alpha)
    if residual is not None:
        base = base + residual[:rows, :cols]
    add_interpolated(plane, base, scale)
