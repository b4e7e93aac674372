"""Approximate best-domain search: domains clustered up to isometry, each range scored exactly
against the few clusters it lies near.

Saupe (1995): for centred blocks the affine fit of a range ``y`` by a candidate ``x`` removes
``<y, x̂>²`` of the error (``x̂ = x/|x|``) unless ``|s|`` is clamped, so good candidates are near
neighbours of ``±ŷ``. The candidates of a fractal code are every domain under 8 isometries; this
search never builds those 8 copies:

1. Features are the DCT coefficients of order ``1 ≤ u + v ≤ order``. That set is closed under the
   square's isometries, which act on it as signed permutations ``M_g`` (``f(g·x) = M_g f(x)``).
2. k-means (faiss, spherical, fixed seed) on the features of each domain in a canonical pose gives
   ``L`` centroids ``μ_l``; the centroid set ``{±M_g μ_l}`` is closed under isometries and sign.
3. A domain ``x`` is filed, in its canonical pose ``g·x``, in the list of the centroid ``±μ_l``
   nearest to that pose's features (largest ``|<M_g f, μ_l>|``, a brute-force product): one
   entry per domain, not 16.
4. A range probes its ``probes`` nearest centroids ``±M_g μ_l`` and scores ``g⁻¹·y`` against every
   entry of list ``l`` with the exact clamped gain of
   :func:`~neural_collages.core.search.best_affine_matches` (one matrix product per list).

The result names a domain and an isometry and is always the true least-squares fit of that
candidate, just not always the best candidate. With a single list (few domains) every range probes
all 8 poses of it: the exact search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..errors import ConfigurationError, MissingDependencyError
from .partitions import apply_isometry
from .search import Progress, clamped_gain

NUM_POSES = 8


@dataclass(frozen=True)
class ClusterSearchSettings:
    """How hard the approximate search looks (defaults measured on Kodak, docs/pifs.md)."""

    list_size: int = 256  #: domains per cluster list (sets the number of lists) ...
    max_lists: int = 256  #: ... up to this many (the nearest-centroid search costs D·lists)
    probes: int = 8  #: centroids (cluster, pose, sign) each range visits
    order: int = 4  #: DCT features of order 1 ≤ u + v ≤ order (at most the block allows)
    kmeans_iterations: int = 10
    train_per_list: int = 40  #: k-means training sample per centroid
    seed: int = 0

    def __post_init__(self):
        for name in ("list_size", "max_lists", "probes", "order", "kmeans_iterations", "train_per_list"):
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
def pose_permutations(side: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For ``side×side`` blocks flattened row-major: ``perm`` ``(8, P)`` with
    ``apply_isometry(x, g).reshape(-1) == x.reshape(-1)[perm[g]]``, ``inverse`` ``(8,)`` (the
    isometry undoing ``g``) and ``compose`` ``(8, 8)``: ``compose[a, b]`` is the isometry ``k``
    with ``x[perm[a]][inv(perm[b])] == x[perm[k]]``, so ``<b·y, a·x> = <y, k·x>``."""
    base = torch.arange(side * side).reshape(side, side)
    perm = torch.stack([apply_isometry(base, g).reshape(-1) for g in range(NUM_POSES)])
    inv = torch.argsort(perm, dim=1)
    key = {tuple(perm[g].tolist()): g for g in range(NUM_POSES)}
    inverse = torch.tensor([key[tuple(inv[g].tolist())] for g in range(NUM_POSES)])
    compose = torch.tensor([[key[tuple(perm[a][inv[b]].tolist())] for b in range(NUM_POSES)]
                            for a in range(NUM_POSES)])
    return perm, inverse, compose


@lru_cache(maxsize=16)
def dct_features(side: int, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal 2-D DCT-II atoms ``(P, F)`` of order ``1 ≤ u + v ≤ order`` (DC excluded), and
    the signed permutations ``M`` ``(8, F, F)`` with ``features(g·x) = M[g] @ features(x)``."""
    j = torch.arange(side, dtype=torch.float64)
    basis = torch.cos(math.pi * (2 * j[None, :] + 1) * j[:, None] / (2 * side)) * math.sqrt(2 / side)
    basis[0] /= math.sqrt(2)
    pairs = sorted(((u, v) for u in range(side) for v in range(side) if 0 < u + v <= order),
                   key=lambda uv: (uv[0] + uv[1], uv))
    atoms = torch.stack([torch.outer(basis[u], basis[v]).reshape(-1) for u, v in pairs], dim=1)
    perm = pose_permutations(side)[0]
    inv = torch.argsort(perm, dim=1)
    # f(g·x)_i = Σ_q A[q, i]·x[perm_g[q]] = Σ_r A[inv_g[r], i]·x[r], and x's features span the rest.
    poses = torch.stack([atoms[inv[g]].T @ atoms for g in range(NUM_POSES)]).round()
    return atoms.to(torch.float32), poses.to(torch.float32)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)


def cluster_affine_matches(
    ranges: torch.Tensor,
    domains: torch.Tensor,
    s_max: float,
    settings: ClusterSearchSettings = ClusterSearchSettings(),
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every centred range ``(R, P)``, a domain (of ``domains``, centred, ``(D, P)``, square
    blocks in their own pose) and an isometry (``apply_isometry`` numbering) to fit it with.

    Returns ``(domain, isometry, scale, error)``, each ``(R,)``: ``scale`` is the optimal ``|s| ≤
    s_max`` for that candidate and ``error`` the squared error of the fit. Deterministic for a given
    ``settings.seed`` and thread count.
    """
    R, P = ranges.shape
    D = domains.shape[0]
    if D == 0:
        raise ConfigurationError("no domains to search")
    side = math.isqrt(P)
    if side * side != P or domains.shape[1] != P:
        raise ConfigurationError(f"the fast search needs square blocks of one size, got {P} and {domains.shape[1]} px")
    perm, inverse, compose = pose_permutations(side)
    lists = min(settings.max_lists, D // settings.list_size)
    if lists >= 2:
        assign, pose, probe_list, probe_pose = _cluster(ranges, domains, lists, settings)
    else:  # one list: every range tries every pose, i.e. the exact search
        lists = 1
        assign, pose = torch.zeros(D, dtype=torch.long), torch.zeros(D, dtype=torch.long)
        probe_list = torch.zeros(R, NUM_POSES, dtype=torch.long)
        probe_pose = torch.arange(NUM_POSES).expand(R, NUM_POSES)

    # Entries: domain d in the pose that files it (entry = domain d under isometry filed[d]).
    filed = inverse[pose]
    norm2 = domains.pow(2).sum(1)
    norm = norm2.sqrt()
    inv_norm = torch.where(norm2 > 1e-12, 1.0 / norm.clamp(min=1e-30), torch.zeros_like(norm))
    by_list = torch.argsort(assign, stable=True)
    counts = torch.bincount(assign, minlength=lists)
    entries = (domains[by_list].gather(1, perm[filed[by_list]]) * inv_norm[by_list, None]).contiguous()
    limit = (s_max * norm[by_list]).contiguous()

    # Queries: each range in the pose its probe names (g⁻¹·y for centroid M_g μ_l), grouped by list.
    k = probe_list.shape[1]
    q_list = probe_list.reshape(-1)
    q_pose = inverse[probe_pose.reshape(-1)]
    q_range = torch.arange(R).repeat_interleave(k)
    grouped = torch.argsort(q_list, stable=True)
    q_list, q_pose, q_range = q_list[grouped], q_pose[grouped], q_range[grouped]
    queries = ranges[q_range].gather(1, perm[q_pose])
    q_counts = torch.bincount(q_list, minlength=lists)

    gain = torch.full((q_range.shape[0],), -1.0, dtype=ranges.dtype)
    best = torch.zeros(q_range.shape[0], dtype=torch.long)
    e0 = q0 = 0
    for ne, nq in zip(counts.tolist(), q_counts.tolist()):
        if ne and nq:
            gain[q0 : q0 + nq], best[q0 : q0 + nq] = _best_entries(queries[q0 : q0 + nq], entries[e0 : e0 + ne],
                                                                   limit[e0 : e0 + ne], e0)
        e0, q0 = e0 + ne, q0 + nq

    # Each range's best probe, then the candidate it names: <h·y, f·x> = <y, compose[f, h]·x>.
    top = torch.full((R,), -2.0, dtype=ranges.dtype).scatter_reduce(0, q_range, gain, "amax")
    winner = torch.zeros(R, dtype=torch.long)
    wins = (gain >= top[q_range]).nonzero()[:, 0]
    winner[q_range[wins]] = wins
    domain = by_list[best[winner]]
    isometry = compose[filed[domain], q_pose[winner]]
    x = domains[domain].gather(1, perm[isometry])
    sxy, sxx = (ranges * x).sum(1), x.pow(2).sum(1)
    scale = torch.where(sxx > 1e-12, sxy / sxx.clamp(min=1e-30), torch.zeros_like(sxy)).clamp(-s_max, s_max)
    error = (ranges.pow(2).sum(1) - 2 * scale * sxy + scale * scale * sxx).clamp(min=0)
    if progress is not None:
        progress(R)
    return domain, isometry, scale, error


def _best_entries(queries, entries, limit, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query, the largest clamped gain over ``entries`` (unit rows with ``limit = s_max·|x|``)
    and its entry number plus ``offset``. The gain never exceeds ``c²``, so the entry with the
    largest ``|c|`` wins outright unless its own ``s`` is clamped; only those rows are rescored."""
    c = (queries @ entries.T).abs_()
    top, col = c.max(dim=1)
    gain = top * top
    clamped = (top > limit[col]).nonzero()[:, 0]
    if clamped.numel():
        gain[clamped], col[clamped] = clamped_gain(c[clamped], limit).max(dim=1)
    return gain, col + offset


def _cluster(ranges, domains, lists: int, settings: ClusterSearchSettings):
    """k-means up to pose; per domain its list and the pose ``g`` of its centroid ``±M_g μ_l``,
    per range the lists and poses of its ``probes`` nearest centroids."""
    faiss = _faiss()
    faiss.omp_set_num_threads(torch.get_num_threads())
    side = math.isqrt(ranges.shape[1])
    atoms, poses = dct_features(side, min(settings.order, 2 * side - 2))
    F = atoms.shape[1]
    feats = _unit_rows(domains @ atoms)
    # Training sample in a canonical pose: the variant with the largest projection on a fixed
    # generic direction (sign made positive), so that k-means sees each shape once, not 16 times.
    variants = torch.einsum("gij,nj->ngi", poses, feats)
    score = variants @ torch.linspace(1.0, 0.2, F)
    g = score.abs().argmax(dim=1)
    rows = torch.arange(feats.shape[0])
    canonical = variants[rows, g] * torch.sign(score[rows, g])[:, None]
    rng = np.random.default_rng(settings.seed)
    sample = rng.choice(feats.shape[0], min(feats.shape[0], settings.train_per_list * lists), replace=False)
    kmeans = faiss.Kmeans(F, lists, niter=settings.kmeans_iterations, seed=settings.seed, spherical=True,
                          verbose=False)
    kmeans.train(np.ascontiguousarray(canonical[torch.from_numpy(np.sort(sample))].numpy()))
    mu = torch.from_numpy(kmeans.centroids)
    centroids = torch.einsum("gij,lj->gli", poses, mu).reshape(NUM_POSES * lists, F).T.contiguous()  # col g·L + l
    probed = _nearest_centroids(_unit_rows(ranges @ atoms), centroids, min(settings.probes, centroids.shape[1]))
    # A domain is filed in the list of the centroid nearest to its canonical variant g·x, so in the
    # pose g⁻¹ (near M_g⁻¹ μ_l): L centroids to search, not 8L. It is not always the nearest of all
    # 8L (six training photos: +0.17 % BD-rate against exhaustive, +0.03 % for the nearest of all;
    # a quarter of the nearest-centroid time at 12 MP).
    nearest = _nearest_centroids(canonical, mu.T.contiguous(), 1)[:, 0]
    inverse = pose_permutations(side)[1]
    return nearest, inverse[g], probed % lists, probed // lists


def _nearest_centroids(feats: torch.Tensor, centroids: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` columns of ``centroids`` ``(F, n)`` with the largest ``|<f, c>|`` per row of ``feats``
    (the sign is free: a fit may take a negative scale). An exact inner-product search of faiss
    over ``±c``: the top ``k ≤ n`` of those are the top ``|<f, c>|``, each column once; faiss's
    blocked product never holds the whole similarity matrix (torch's took twice as long at n = 4096)."""
    n = centroids.shape[1]
    if feats.shape[0] == 0:
        return torch.zeros(0, k, dtype=torch.long)
    index = _faiss().IndexFlatIP(centroids.shape[0])
    index.add(np.ascontiguousarray(torch.cat([centroids.T, -centroids.T]).to(torch.float32).numpy()))
    _, found = index.search(np.ascontiguousarray(feats.to(torch.float32).numpy()), k)
    return torch.from_numpy(found % n).to(torch.long)
