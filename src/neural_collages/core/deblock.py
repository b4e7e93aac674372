"""Deblocking: smooth the steps a block code leaves at block borders, identically at every scale.

Each range of a collage is coded on its own, so at low rates neighbouring blocks meet with a
step. Across every block border that the partition has (the leaves of a quadtree, given at scale
1), the filter measures the step ``δ`` between the means of the ``width`` pixels on either side
and, where ``|δ| ≤ threshold`` (a larger step is an edge of the picture, left alone), replaces it
by a linear ramp across the ``2·width`` pixels: pixel ``t`` of the band (``t = 0 … 2w−1`` from
the left) moves by ``α·δ·((t + ½)/(2w) − [t ≥ w])``. Vertical borders are filtered first, then
horizontal ones.

At scale ``s`` every length is ``s`` times larger (the band is ``s·width`` pixels, the borders
``s`` times farther apart). Band means of an ``s×`` image average-pooled by ``s`` are the band
means at 1×, and a linear ramp averaged over ``s`` sub-pixels is the ramp at their centre, so the
filtered ``s×`` decode pooled is the filtered 1× decode up to float rounding: the codecs' scale
property survives the filter.
"""

from __future__ import annotations

from typing import Iterable

import torch

from ..errors import ConfigurationError

#: Band pixels gathered at a time (16 MB of float32).
BAND_ELEMENTS = 1 << 22


def border_masks(leaves: Iterable[tuple[int, int, int]], size: tuple[int, int], cell: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where blocks meet, on the grid of ``cell``-px units of a ``size`` image.

    ``leaves`` are ``(y, x, n)`` blocks at scale 1 tiling the image. Returns ``vertical``
    ``(H/cell, W/cell)``, true where a block border runs along the left side of a unit, and
    ``horizontal`` likewise along its top. The image's own edges are not borders.
    """
    table = torch.tensor([tuple(leaf) for leaf in leaves], dtype=torch.long).reshape(-1, 3) // cell
    # Label every unit with its block, one block size at a time; borders are where labels change.
    label = torch.full(_unit_grid(size, cell), -1, dtype=torch.long)
    for n in torch.unique(table[:, 2]).tolist():
        ids = (table[:, 2] == n).nonzero()[:, 0]
        steps = torch.arange(n)
        rows = (table[ids, 0, None] + steps)[:, :, None].expand(-1, n, n)
        cols = (table[ids, 1, None] + steps)[:, None, :].expand(-1, n, n)
        label[rows, cols] = ids[:, None, None].expand(-1, n, n)
    vertical, horizontal = _empty_masks(size, cell)
    vertical[:, 1:] = label[:, 1:] != label[:, :-1]
    horizontal[1:, :] = label[1:, :] != label[:-1, :]
    return vertical, horizontal


def grid_masks(size: tuple[int, int], cell: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`border_masks` of the regular grid of ``cell``-px blocks (no loop over the blocks)."""
    vertical, horizontal = _empty_masks(size, cell)
    vertical[:, 1:] = True
    horizontal[1:, :] = True
    return vertical, horizontal


def _unit_grid(size: tuple[int, int], cell: int) -> tuple[int, int]:
    H, W = size
    if H % cell or W % cell:
        raise ConfigurationError(f"a {W}x{H} image is not made of {cell}-px units")
    return (H // cell, W // cell)


def _empty_masks(size: tuple[int, int], cell: int) -> tuple[torch.Tensor, torch.Tensor]:
    shape = _unit_grid(size, cell)
    return torch.zeros(shape, dtype=torch.bool), torch.zeros(shape, dtype=torch.bool)


def _filter_columns(z: torch.Tensor, borders: torch.Tensor, cell: int, width: int, alpha: float,
                    threshold: float, scale: int) -> None:
    """Filter the vertical borders of ``z`` ``(H, W)`` in place; ``borders`` on the unit grid.

    Whether a border is smoothed is decided per group of ``scale`` rows, on their mean step: the
    1x row they pool to (per-row decisions at scale s would not pool to the 1x decision)."""
    H, W = z.shape
    units = borders.any(dim=0).nonzero()[:, 0]
    if units.numel() == 0:
        return
    cols = units * cell  # first pixel column right of each border
    offsets = torch.arange(-width, width)
    index = cols[None, :] + offsets[:, None]  # (2w, J)
    ramp = (torch.arange(2 * width, dtype=z.dtype) + 0.5) / (2 * width) - (torch.arange(2 * width) >= width).to(z.dtype)
    # Rows a chunk at a time: the bands of a 13x decode would be a quarter of the image at once.
    chunk = max(cell, (BAND_ELEMENTS // index.numel()) // cell * cell)
    unit_rows = H // borders.shape[0]
    for r0 in range(0, H, chunk):
        rows = z[r0 : r0 + chunk]
        on = borders[r0 // unit_rows : -(-(r0 + rows.shape[0]) // unit_rows), units]
        on = on.repeat_interleave(unit_rows, dim=0)[: rows.shape[0]]  # (rows, J)
        band = rows[:, index]  # (rows, 2w, J)
        step = band[:, width:].mean(dim=1) - band[:, :width].mean(dim=1)
        pooled = step.reshape(-1, scale, step.shape[1]).mean(dim=1).repeat_interleave(scale, dim=0)
        step = torch.where(on & (pooled.abs() <= threshold), step * alpha, torch.zeros_like(step))
        band += ramp[None, :, None] * step[:, None, :]
        rows[:, index] = band


def deblock(plane: torch.Tensor, leaves: Iterable[tuple[int, int, int]], scale: int, cell: int, width: int,
            alpha: float, threshold: float, in_place: bool = False) -> torch.Tensor:
    """``plane`` ``(s·H, s·W)`` with its block borders smoothed (see the module docstring).

    ``leaves`` ``(y, x, n)`` at scale 1 on a grid of ``cell``-px units; ``width`` (pixels at scale
    1, at most ``cell / 2``), ``alpha`` in ``[0, 1]`` and ``threshold`` (plane units) set the filter.
    A new tensor, or ``plane`` itself with ``in_place`` (a large decode needs no second copy).
    """
    sH, sW = plane.shape
    masks = border_masks(leaves, (sH // scale, sW // scale), cell)
    return deblock_borders(plane, masks, scale, cell, width, alpha, threshold, in_place)


def deblock_borders(plane: torch.Tensor, masks: tuple[torch.Tensor, torch.Tensor], scale: int, cell: int,
                    width: int, alpha: float, threshold: float, in_place: bool = False) -> torch.Tensor:
    """:func:`deblock` with the borders given as ``(vertical, horizontal)`` masks (:func:`border_masks`)."""
    if not 1 <= width <= cell // 2:
        raise ConfigurationError(f"width must lie in [1, {cell // 2}], got {width}")
    if not 0 <= alpha <= 1 or not threshold >= 0:
        raise ConfigurationError(f"alpha must lie in [0, 1] and threshold be >= 0, got {alpha} and {threshold}")
    vertical, horizontal = masks
    z = plane if in_place else plane.clone()
    _filter_columns(z, vertical, cell * scale, width * scale, alpha, threshold, scale)
    _filter_columns(z.T, horizontal.T, cell * scale, width * scale, alpha, threshold, scale)
    return z
