"""Causal contexts for entropy coding: classes computed from what a decoder has already decoded.

Both depend only on the row above, so a decoder can decode a whole row of cells at once (one
vectorised call per row instead of one per symbol).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Context classes of a range: ``v = 2·n(above) + n(above-left) + n(above-right)`` with ``n`` the
#: number of nonzero coefficients of those ranges (same plane), bucketed at these bounds.
CONTEXT_BOUNDS = (0, 2, 6, 14)
NUM_CONTEXTS = len(CONTEXT_BOUNDS) + 1
#: Context classes of a range mean's DPCM residual: ``|above − above-left| + |above-right − above|``
#: (mean indices of the decoded row above; edges replicated), bucketed at these bounds.
MEAN_CONTEXT_BOUNDS = (0, 2, 6, 14)
NUM_MEAN_CONTEXTS = len(MEAN_CONTEXT_BOUNDS) + 1



def mean_context_grid(grid: torch.Tensor) -> torch.Tensor:
    """Context class of every range mean from the row above: ``(..., rows, cols)`` indices → classes.

    Row 0 is class 0. Uses rounded values (noisy training grids give the classes of their integers).
    """
    g = torch.round(grid).long()
    padded = F.pad(g.unsqueeze(0) if g.dim() == 2 else g, (1, 1, 0, 0), mode="replicate")
    padded = padded.squeeze(0) if g.dim() == 2 else padded
    act = (padded[..., :-1, 1:-1] - padded[..., :-1, :-2]).abs() + (padded[..., :-1, 2:] - padded[..., :-1, 1:-1]).abs()
    ctx = torch.bucketize(act, torch.tensor(MEAN_CONTEXT_BOUNDS, device=g.device), right=True)
    return F.pad(ctx, (0, 0, 1, 0))  # row 0: class 0


def context_grid(nonzero: torch.Tensor) -> torch.Tensor:
    """Context class of every range from the row above: ``(..., rows, cols)`` counts → classes.

    Depends only on the previous row, so a decoder can decode a whole row of ranges at once.
    """
    nz = nonzero.long()
    padded = F.pad(nz, (1, 1, 1, 0))  # a zero row above, zero columns left and right
    above = padded[..., :-1, 1:-1]
    v = 2 * above + padded[..., :-1, :-2] + padded[..., :-1, 2:]
    return torch.bucketize(v, torch.tensor(CONTEXT_BOUNDS, device=v.device))
