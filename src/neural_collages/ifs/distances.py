"""Distances between point sets: exact nearest neighbours (SciPy's k-d tree) and Chamfer distances.

Distances are Euclidean (not squared); the Chamfer distance is the mean of the two directed mean
nearest-neighbour distances.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..errors import ConfigurationError
from .model import apply_maps

#: Queries of at least this many points use every core.
PARALLEL_QUERY = 50_000


def nearest_index(ref) -> cKDTree:
    """A k-d tree over ``ref (n, d)`` (SciPy's ``cKDTree``: exact Euclidean nearest neighbours)."""
    r = np.ascontiguousarray(np.asarray(ref, dtype=np.float64))
    if r.ndim != 2 or r.shape[0] == 0 or r.shape[1] not in (1, 2, 3):
        raise ConfigurationError(f"reference points must have shape (n, 1..3) with n >= 1, got {r.shape}")
    return cKDTree(r, balanced_tree=False, compact_nodes=False)  # faster builds, same exact answers


def nearest(query, ref) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest neighbours of ``query (m, d)`` among ``ref (n, d)``: ``(distances, indices)``."""
    q = np.asarray(query, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise ConfigurationError(f"point sets must be (m, d) and (n, d), got {q.shape} and {r.shape}")
    return query_index(nearest_index(r), q)


def query_index(index: cKDTree, query) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, indices)`` of every query point's nearest point in ``index``."""
    q = np.ascontiguousarray(np.asarray(query, dtype=np.float64))
    if len(q) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    # Threads pay off only for large queries (measured: thread start-up dominated 4k-point ones).
    d, i = index.query(q, k=1, workers=-1 if len(q) >= PARALLEL_QUERY else 1)
    return d, i.astype(np.int64)


def chamfer(a, b) -> float:
    """Symmetric Chamfer distance: ``(mean_a min_b |a−b| + mean_b min_a |a−b|) / 2`` (exact)."""
    a = _np_points(a)
    b = _np_points(b)
    return 0.5 * (float(nearest(a, b)[0].mean()) + float(nearest(b, a)[0].mean()))


def _np_points(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ConfigurationError(f"points must have shape (M, d) with M >= 1, got {x.shape}")
    return x


# --------------------------------------------------------------------------- differentiable losses


def chamfer_torch(x: torch.Tensor, y: torch.Tensor, hausdorff_weight: float = 0.0, beta: float = 50.0) -> torch.Tensor:
    """Differentiable symmetric Chamfer between ``x (M, d)`` and ``y (K, d)``.

    The nearest neighbours are *found* without gradients (exactly, :func:`nearest`); the distances
    to them are then computed in torch, which gives the gradient of the min almost everywhere at a
    fraction of the cost of back-propagating through a full ``torch.cdist`` matrix.
    With ``hausdorff_weight`` > 0 adds ``weight · softmax_β`` of the nearest-neighbour distances
    in both directions (``log mean exp(β d) / β``, a smooth stand-in for the Hausdorff distance).
    """
    xn = x.detach().double().numpy()
    yn = y.detach().double().numpy()
    _, ix = nearest(xn, yn)
    _, iy = nearest(yn, xn)
    dx = (x - y[torch.from_numpy(ix)]).norm(dim=1)
    dy = (y - x[torch.from_numpy(iy)]).norm(dim=1)
    loss = 0.5 * (dx.mean() + dy.mean())
    if hausdorff_weight:
        def soft(d):
            return (torch.logsumexp(beta * d, 0) - math.log(d.numel())) / beta
        loss = loss + hausdorff_weight * 0.5 * (soft(dx) + soft(dy))
    return loss


def collage_loss(A: torch.Tensor, t: torch.Tensor, x: torch.Tensor, **kwargs) -> torch.Tensor:
    """Chamfer between the points ``x`` and their collage ``∪_i (A_i x + t_i)``."""
    return chamfer_torch(x, apply_maps(A, t, x), **kwargs)
