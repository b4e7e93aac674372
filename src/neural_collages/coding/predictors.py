"""Causal predictors of block means (DPCM): the encoder codes ``value − prediction``.

* :func:`med_predict` — median-edge (LOCO-I) prediction over a regular grid, vectorised in torch
  (floats in training, integers when coding); :func:`med_reconstruct_row` inverts it one row at
  a time in integer arithmetic (the decoder's side).
* :func:`neighbour_mean_prediction` — the rounded average of the coded cells directly above and
  to the left of a quadtree block (blocks of several sizes on a grid of the smallest cell).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def med_predict(grid: torch.Tensor, first: float) -> torch.Tensor:
    """Median-edge (LOCO-I) prediction of every cell of ``(..., h, w)`` from its causal neighbours.

    First cell: ``first``; first row: the left cell; first column: the cell above; elsewhere
    ``median(left, top, left + top − top-left)``. Works on floats (training) and integers alike.
    """
    left = F.pad(grid, (1, 0))[..., :, :-1]
    top = F.pad(grid, (0, 0, 1, 0))[..., :-1, :]
    top_left = F.pad(grid, (1, 0, 1, 0))[..., :-1, :-1]
    lo, hi = torch.minimum(left, top), torch.maximum(left, top)
    med = torch.where(top_left >= hi, lo, torch.where(top_left <= lo, hi, left + top - top_left))
    med = med.clone()
    med[..., 0, :] = left[..., 0, :]
    med[..., :, 0] = top[..., :, 0]
    med[..., 0, 0] = first
    return med


def med_residuals(grid: np.ndarray, first: int) -> np.ndarray:
    """Integer MED residuals of a ``(h, w)`` grid (vectorised; :func:`med_reconstruct_row` inverts them)."""
    pred = med_predict(torch.from_numpy(grid), first).numpy()
    return grid - pred


def med_reconstruct_row(residuals: list[int], above: list[int] | None, first: int) -> list[int]:
    """One row of values from its MED residuals and the decoded row above (integer arithmetic)."""
    row: list[int] = []
    for x, res in enumerate(residuals):
        if above is None:
            pred = first if x == 0 else row[x - 1]
        elif x == 0:
            pred = above[0]
        else:
            a, b, c = row[x - 1], above[x], above[x - 1]
            lo, hi = (a, b) if a < b else (b, a)
            pred = lo if c >= hi else hi if c <= lo else a + b - c
        row.append(pred + res)
    return row


def neighbour_mean_prediction(mean_map: np.ndarray, cell: int, y: int, x: int, n: int, empty: int = 128) -> int:
    """Rounded average of the coded means directly above and to the left of an ``n``-px block at ``(y, x)``.

    ``mean_map`` holds one coded mean per ``cell``-px cell; ``empty`` when the block has no coded
    neighbour (the image's first block).
    """
    return _predict(mean_map, cell, y, x, n, empty)


def _predict(rows, cell: int, y: int, x: int, n: int, empty: int) -> int:
    """:func:`neighbour_mean_prediction` on ``rows`` (an array or a list of lists of cell means)."""
    cy, cx, cn = y // cell, x // cell, n // cell
    total = count = 0
    if cy > 0:
        total += int(sum(rows[cy - 1][cx : cx + cn]))
        count += cn
    if cx > 0:
        total += int(sum(rows[cy + i][cx - 1] for i in range(cn)))
        count += cn
    return (total + count // 2) // count if count else empty


class NeighbourMeanGrid:
    """Coded means on the grid of ``cell``-px cells, predicted as :func:`neighbour_mean_prediction`
    does, on plain Python lists: coders call it once per block, where an array element access
    costs several times more than the arithmetic."""

    def __init__(self, height: int, width: int, cell: int, empty: int = 128):
        self.cell, self.empty = cell, empty
        self.rows = [[0] * (width // cell) for _ in range(height // cell)]

    def predict(self, y: int, x: int, n: int) -> int:
        """The prediction of the ``n``-px block at ``(y, x)`` from the cells set so far."""
        return _predict(self.rows, self.cell, y, x, n, self.empty)

    def set(self, y: int, x: int, n: int, value: int) -> None:
        cy, cx, cn = y // self.cell, x // self.cell, n // self.cell
        for i in range(cn):
            self.rows[cy + i][cx : cx + cn] = [value] * cn
