"""Deblocking of neural decodes: one filter setting per plane kind, named in the file.

Every 8×8 range of the neural codec is its own weighted sum of learned patches plus its mean, so
at low rates neighbouring ranges meet with a step, and a zoomed decode enlarges the grid. The
decoder smooths every range border with :mod:`neural_collages.core.deblock` (a linear ramp across
``2·width`` pixels where the step is at most a threshold) on the luma plane and on both chroma
planes, at any scale (so the filtered ``s×`` decode pooled is the filtered 1× decode).

A file names a preset for luma and one for chroma (``PRESETS``; 0 is off). The encoder decodes
its own code once and picks each plane's preset by that plane's error against the image, then
keeps the pair only if the 8-bit RGB decode is at least as close as without filtering, so a
file is never worse at 1× than an unfiltered one. On held-out training photos the choice gained
0.52 dB at photo quality 1 and 0.22 dB at quality 5 (chroma about a quarter of it).
"""

from __future__ import annotations

import itertools

import torch

from ...core.deblock import deblock_borders, grid_masks
from ...errors import FormatError
from ...models.neural_collage import RANGE

#: Filter settings a file may name: (band width px, strength α, largest step smoothed, 8-bit units).
#: Index 0 is off; the list is part of the format (payload version 2): never reorder it.
PRESETS: tuple[tuple[int, float, float] | None, ...] = (None,) + tuple(
    itertools.product((1, 2, 3), (0.5, 0.75, 1.0), (16.0, 32.0, 64.0, 128.0))
)
OFF = (0, 0)


def check_presets(value) -> tuple[int, int]:
    """A file's ``deblock`` param: ``[luma preset, chroma preset]`` (``FormatError`` otherwise)."""
    if (not isinstance(value, list) or len(value) != 2
            or any(type(v) is not int or not 0 <= v < len(PRESETS) for v in value)):
        raise FormatError(f"neural param deblock must be two preset numbers in [0, {len(PRESETS) - 1}], "
                          f"got {value!r}")
    return value[0], value[1]


def filter_plane(plane: torch.Tensor, preset: int, scale: int, in_place: bool = False) -> torch.Tensor:
    """Planes ``(C, s·H, s·W)`` (padded to whole ranges) with their range borders smoothed by ``preset``."""
    if not preset:
        return plane
    width, alpha, threshold = PRESETS[preset]
    masks = grid_masks((plane.shape[-2] // scale, plane.shape[-1] // scale), RANGE)
    out = plane if in_place else torch.empty_like(plane)
    for c in range(plane.shape[0]):
        out[c] = deblock_borders(plane[c], masks, scale, RANGE, width, alpha, threshold / 255.0, in_place=in_place)
    return out


def apply(luma: torch.Tensor, chroma: torch.Tensor, presets: tuple[int, int], scale: int,
          in_place: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Luma ``(1, sH, sW)`` and chroma ``(2, sh, sw)`` planes filtered by a file's presets."""
    return (filter_plane(luma, presets[0], scale, in_place), filter_plane(chroma, presets[1], scale, in_place))


def _best(error) -> int:
    """The preset of least ``error``: every width and threshold at full strength (and off), then
    the weaker strengths of the best of those (15 filterings instead of 37; on training photos it
    loses under 0.01 dB against trying all)."""
    errors = {0: error(0)}
    for p in range(1, len(PRESETS)):
        if PRESETS[p][1] == 1.0:
            errors[p] = error(p)
    best = min(errors, key=errors.get)
    if best:
        width, _, threshold = PRESETS[best]
        for p in range(1, len(PRESETS)):
            if PRESETS[p][0] == width and PRESETS[p][2] == threshold and p not in errors:
                errors[p] = error(p)
        best = min(errors, key=errors.get)
    return best


def choose(luma: torch.Tensor, chroma: torch.Tensor, target_luma: torch.Tensor, target_chroma: torch.Tensor,
           size: tuple[int, int], upsample, rgb_error) -> tuple[tuple[int, int], float]:
    """The presets ``(luma, chroma)`` for a 1× decode's planes (see the module docstring) and the
    ``rgb_error`` of the decode they give.

    ``target_*`` are the image's own planes (chroma at full resolution), ``size`` ``(H, W)`` the
    unpadded image, ``upsample`` the decoder's chroma interpolation and ``rgb_error(luma,
    chroma)`` the squared error of the 8-bit RGB decode those planes give.
    """
    H, W = size

    def luma_error(p):
        return float((filter_plane(luma, p, 1)[..., :H, :W] - target_luma[..., :H, :W]).pow(2).sum())

    def chroma_error(p):
        up = upsample(filter_plane(chroma, p, 1)[None])[0]
        return float((up[..., :H, :W] - target_chroma[..., :H, :W]).pow(2).sum())

    chosen = (_best(luma_error), _best(chroma_error))
    unfiltered = rgb_error(luma, chroma)
    if chosen == OFF:
        return OFF, unfiltered
    filtered = rgb_error(*apply(luma, chroma, chosen, 1))
    return (chosen, filtered) if filtered <= unfiltered else (OFF, unfiltered)
