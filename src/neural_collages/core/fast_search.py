"""Approximate best-candidate search: a short list from an inverted-file index, scored exactly.

Saupe (1995): for centred blocks the affine fit of a range ``y`` by a candidate ``x`` removes
``<y, x̂>²`` of the error (``x̂ = x/|x|``) unless ``|s|`` is clamped, so the best candidate is the
nearest neighbour of ``±ŷ`` among the normalised candidates. An inverted-file index (faiss
``IndexIVFFlat``) over the lowest-frequency DCT coefficients of ``±x̂`` returns a short list per
range, and the list is scored with the exact clamped gain of
:func:`~neural_collages.core.search.best_affine_matches`. The result is always a true least-squares
fit of the candidate it names, just not always the best candidate; where the exact product is
cheap anyway (few ranges or candidates) the exact search runs instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..errors import ConfigurationError, MissingDependencyError
from .search import Progress, best_affine_matches, clamped_gain


@dataclass(frozen=True)
class ShortlistSettings:
    """How hard the approximate search looks (defaults measured on Kodak, docs/pifs.md)."""

    features: int = 16  #: DCT coefficients per block in the index (at most the block's pixels − 1)
    shortlist: int = 128  #: candidates scored exactly per range
    probes: int = 16  #: inverted lists visited per range
    list_size: int = 256  #: index vectors per inverted list (sets the list count) ...
    max_lists: int = 1024  #: ... up to this many, so that filling the index stays linear
    kmeans_iterations: int = 10
    #: Below this many multiply-adds (ranges × candidates × pixels) the exact search is cheaper.
    exact_below: float = 2e10
    seed: int = 0

    def __post_init__(self):
        for name in ("features", "shortlist", "probes", "list_size", "max_lists", "kmeans_iterations"):
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= 1 << 16:
                raise ConfigurationError(f"{name} must be an integer in [1, 65536], got {value!r}")


def _faiss():
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError("the fast search needs faiss: pip install faiss-cpu") from None
    return faiss


@lru_cache(maxsize=16)
def dct_features(side: int, count: int) -> torch.Tensor:
    """``(side², count)``: the orthonormal 2-D DCT-II atoms of lowest frequency, DC excluded."""
    j = torch.arange(side, dtype=torch.float64)
    basis = torch.cos(math.pi * (2 * j[None, :] + 1) * j[:, None] / (2 * side)) * math.sqrt(2 / side)
    basis[0] /= math.sqrt(2)
    order = sorted(((u, v) for u in range(side) for v in range(side) if (u, v) != (0, 0)),
                   key=lambda uv: (uv[0] + uv[1], uv))
    atoms = [torch.outer(basis[u], basis[v]).reshape(-1) for u, v in order[:count]]
    return torch.stack(atoms, dim=1).to(torch.float32)


def shortlist_affine_matches(
    ranges: torch.Tensor,
    candidates: torch.Tensor,
    s_max: float,
    settings: ShortlistSettings = ShortlistSettings(),
    chunk_rows: int = 4096,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Like :func:`~neural_collages.core.search.best_affine_matches` (same arguments and results),
    but each range scores only a short list of candidates from an approximate index.

    Blocks must be square (``n = side²`` pixels) and centred. Deterministic for a given
    ``settings.seed`` and thread count.
    """
    R, P = ranges.shape
    D = candidates.shape[0]
    if D == 0:
        raise ConfigurationError("no candidates to search")
    if float(R) * D * P <= settings.exact_below or D <= settings.shortlist:
        return best_affine_matches(ranges, candidates, s_max, progress=progress)
    side = math.isqrt(P)
    if side * side != P:
        raise ConfigurationError(f"the fast search needs square blocks, got {P} pixels")
    faiss = _faiss()
    faiss.omp_set_num_threads(torch.get_num_threads())
    atoms = dct_features(side, min(settings.features, P - 1))
    dim = atoms.shape[1]

    sxx = candidates.pow(2).sum(1)
    norm = sxx.sqrt()
    usable = sxx > 1e-12  # flat candidates can only fit with s = 0
    inv_norm = torch.where(usable, 1.0 / norm.clamp(min=1e-30), torch.zeros_like(norm))
    feats = ((candidates @ atoms) * inv_norm[:, None]).numpy()
    # Both signs in the index: the best fit maximises |<y, x̂>|, and s may be negative.
    points = np.ascontiguousarray(np.concatenate([feats, -feats]), dtype=np.float32)
    del feats
    lists = max(1, min(settings.max_lists, points.shape[0] // settings.list_size))
    quantiser = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quantiser, dim, lists)
    index.cp.niter = settings.kmeans_iterations
    index.cp.seed = settings.seed
    rng = np.random.default_rng(settings.seed)
    train = points[np.sort(rng.choice(points.shape[0], min(points.shape[0], 40 * lists), replace=False))]
    index.train(train)
    index.add(points)
    index.nprobe = min(settings.probes, lists)
    del points

    syy = ranges.pow(2).sum(1)
    queries = (ranges @ atoms) / syy.sqrt().clamp(min=1e-30)[:, None]
    _, found = index.search(np.ascontiguousarray(queries.numpy(), dtype=np.float32), settings.shortlist)
    found = torch.from_numpy(found)
    valid = found >= 0
    found = torch.where(valid, found % D, torch.zeros_like(found))

    index_out = torch.zeros(R, dtype=torch.long)
    scale = torch.zeros(R, dtype=ranges.dtype)
    gain = torch.zeros(R, dtype=ranges.dtype)
    for r0 in range(0, R, chunk_rows):
        ids = found[r0 : r0 + chunk_rows]
        # c = <y, x̂> and ν = |x|: the fit removes c² unless |s| = |c|/ν is clamped at s_max.
        c = torch.einsum("rp,rkp->rk", ranges[r0 : r0 + chunk_rows], candidates[ids]) * inv_norm[ids]
        g = clamped_gain(c.abs(), s_max * norm[ids])
        g = torch.where(valid[r0 : r0 + chunk_rows] & usable[ids], g, torch.full_like(g, -1.0))
        best, col = g.max(dim=1)
        chosen = ids.gather(1, col[:, None])[:, 0]
        c_best = c.gather(1, col[:, None])[:, 0]
        s = (c_best * inv_norm[chosen]).clamp(-s_max, s_max)
        index_out[r0 : r0 + chunk_rows] = chosen
        scale[r0 : r0 + chunk_rows] = torch.where(best > 0, s, torch.zeros_like(s))
        gain[r0 : r0 + chunk_rows] = best.clamp(min=0)
        if progress is not None:
            progress(ids.shape[0])
    return index_out, scale, (syy - gain).clamp(min=0)
