"""Fitting starts read off the cloud's self-similarity: its largest copy of itself, then maps onto what is left.

Random restarts (:func:`~neural_collages.ifs.fit.random_ifs`) seldom land in the basin of a fractal
whose maps differ much in size — the fern's are 0.85, two of 0.3 and a degenerate one of 0.16 —
and the collage loss does not leave a wrong basin (measured on a 100k-point fern: 3.3× the
sampling floor from 24 restarts, 1.006× when started at the true maps). This module builds
starts the way one reads such a fractal by eye:

1. :func:`largest_self_maps`: the largest similarity ``x ↦ a + s·Q(x − a)`` (anchor ``a`` a cloud
   point, scale ``s`` from ``s_max`` down, ``Q`` a small rotation or a reflection) that maps the
   cloud into itself (mean distance of the image to the cloud under :data:`INSIDE` point spacings).
2. :func:`greedy_cover`: map by map, the part of the cloud that no image covers yet (farther than
   ``threshold`` spacings from every image), cut into connected pieces (points linked within
   ``link`` spacings) and, for pieces that touch, into k-means clusters. A map onto a piece is
   fitted by moments (:func:`moment_map`), and the piece that covers most for the least spill is
   taken; the last map is chosen by the attractor score.
3. :func:`reseeds`: for a fitted IFS, each map replaced in turn by a moment map onto what is still
   uncovered (one piece, two pieces together — a stem cut in two by a leaflet's image —, or all of
   it), the proposals its attractor scores better with, best first.

Distances are in units of the cloud's mean nearest-neighbour spacing, so nothing depends on the
cloud's size or point count. Everything runs on at most :data:`MAX_POINTS` points of the cloud.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .distances import nearest_index, query_index

#: The cloud points self-covering works on (a random subset of larger clouds).
MAX_POINTS = 100_000
#: A similarity maps the cloud "into itself" when its image lies this close on average (spacings).
INSIDE = 2.0
#: Spill is this much worse than missing coverage when choosing the next piece (measured on the fern).
SPILL_WEIGHT = 3.0
#: Pieces smaller than this are noise (points).
MIN_PIECE = 20
#: Starts stay this far below the contraction bound (a map on the bound cannot be held strictly below it).
BELOW = 0.98

Score = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class CoverSetting:
    """How uncovered points are found and cut into pieces, in point spacings."""

    threshold: float
    link: float


#: The greedy covers tried (each gives one start): measured on the fern, none of them alone is
#: reliable, the best of them is.
SETTINGS = (CoverSetting(8.0, 10.0), CoverSetting(5.0, 6.0), CoverSetting(12.0, 10.0))


def spacing(x: np.ndarray, index, rng: np.random.Generator, sample: int = 2000) -> float:
    """Mean distance from a cloud point to its nearest other point."""
    pick = x[rng.choice(len(x), min(sample, len(x)), replace=False)]
    d, _ = index.query(pick, k=2)
    return float(d[:, 1].mean())


def _rotation_2d(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def similarity_parts(dim: int) -> list[np.ndarray]:
    """The orthogonal parts tried for the largest self-map: small rotations, and reflections."""
    if dim == 2:
        rotations = [_rotation_2d(a) for a in np.linspace(-0.3, 0.3, 13)]
        reflections = [_rotation_2d(a) @ np.diag([1.0, -1.0]) for a in np.linspace(0, 2 * math.pi, 36, endpoint=False)]
        return rotations + reflections
    parts = [np.eye(3)]
    for axis in range(3):  # ±0.15 rad about each axis
        for angle in (-0.15, 0.15):
            R = np.eye(3)
            i, j = [k for k in range(3) if k != axis]
            R[i, i] = R[j, j] = math.cos(angle)
            R[i, j], R[j, i] = -math.sin(angle), math.sin(angle)
            parts.append(R)
    return parts


def orthogonal_grid(dim: int) -> list[np.ndarray]:
    """Orthogonal matrices a moment map is matched over: 2-D every 10°, with and without a
    reflection; 3-D the 48 signed permutation matrices (the cube's symmetries)."""
    if dim == 2:
        return [_rotation_2d(a) @ np.diag(f) for a in np.linspace(0, 2 * math.pi, 36, endpoint=False)
                for f in ([1.0, 1.0], [1.0, -1.0])]
    grid = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            Q = np.zeros((3, 3))
            Q[range(3), perm] = signs
            grid.append(Q)
    return grid


def extreme_points(x: np.ndarray) -> np.ndarray:
    """The cloud's farthest points in 16 (2-D) or 26 (3-D) directions."""
    d = x.shape[1]
    if d == 2:
        angles = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        directions = np.stack([np.cos(angles), np.sin(angles)], 1)
    else:
        directions = np.array([v for v in itertools.product((-1.0, 0.0, 1.0), repeat=3) if any(v)])
    return x[np.unique((x @ directions.T).argmax(0))]


def largest_self_maps(x: np.ndarray, index, gap: float, s_max: float, rng: np.random.Generator,
                      count: int = 2, anchors: int = 128, probe: int = 128) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``count`` similarities of the largest scale that map the cloud into itself (none if no scale ≥ 0.3 does)."""
    d = x.shape[1]
    A_list = similarity_parts(d)
    # Anchors (the map's fixed point): random cloud points and the extreme points in many
    # directions (a corner of the Sierpinski triangle is rarely near a random point of it).
    a = np.concatenate([extreme_points(x), x[rng.choice(len(x), min(anchors, len(x)), replace=False)]])  # (K, d)
    s = x[rng.choice(len(x), min(probe, len(x)), replace=False)]  # (m, d)
    check = x[rng.choice(len(x), min(2000, len(x)), replace=False)]
    scale = min(0.9, BELOW * s_max)
    while scale >= 0.3 - 1e-9:
        found = []
        for Q in A_list:
            A = scale * Q
            # every anchor at once: y = a + A (s − a) = s Aᵀ + (a − a Aᵀ)
            t = a - a @ A.T  # (K, d)
            y = (s @ A.T)[None, :, :] + t[:, None, :]
            # Capped: only "inside or not" matters, and far queries are what make a k-d tree slow
            # (uncapped, a 100k-point ring took 2 minutes here).
            cap = 4 * INSIDE * gap
            dist, _ = index.query(y.reshape(-1, d), k=1, distance_upper_bound=cap)
            mean = np.minimum(dist, cap).reshape(len(a), -1).mean(1)
            for k in np.flatnonzero(mean < INSIDE * gap):
                found.append((float(mean[k]), A, t[k]))
        confirmed = []
        for _, A, t in sorted(found, key=lambda f: f[0])[: 8 * count]:
            spill = float(query_index(index, check @ A.T + t)[0].mean())
            if spill < INSIDE * gap:
                confirmed.append((spill, A, t))
        if confirmed:
            confirmed.sort(key=lambda c: c[0])
            kept = []
            for _, A, t in confirmed:  # distinct maps: another part, or an anchor elsewhere
                if all(not np.allclose(A, B) or np.linalg.norm(t - u) > 10 * gap for B, u in kept):
                    kept.append((A, t))
                if len(kept) == count:
                    break
            return kept
        scale = round(scale - 0.05, 4)
    return []


def moment_map(piece: np.ndarray, x_mean: np.ndarray, x_factor_inv: np.ndarray, probe: np.ndarray,
               s_max: float, grid: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The affine map of the cloud onto ``piece`` by moments: ``A = L_P·Q·L_X⁻¹``, ``t = μ_P − A·μ_X``.

    ``A`` maps the cloud's covariance ``L_X L_Xᵀ`` onto the piece's; the orthogonal ``Q`` left free
    by that is the grid's member whose image of ``probe`` (cloud points) matches the piece best in
    Chamfer distance. ``A`` is scaled down to just below ``s_max`` if it is larger.
    """
    d = piece.shape[1]
    mu = piece.mean(0)
    L = np.linalg.cholesky(np.cov(piece.T) + 1e-10 * np.eye(d))
    piece_index = nearest_index(piece)
    sub = piece[: len(probe)]
    best = None
    for Q in grid:
        A = L @ Q @ x_factor_inv
        top = float(np.linalg.svd(A, compute_uv=False)[0])
        if top > BELOW * s_max:
            A = A * (BELOW * s_max / top)
        t = mu - A @ x_mean
        y = probe @ A.T + t
        score = float(query_index(piece_index, y)[0].mean()) + float(query_index(nearest_index(y), sub)[0].mean())
        if best is None or score < best[0]:
            best = (score, A, t)
    return best[1], best[2]


class _Cloud:
    """The cloud with what every step needs: its index, spacing, moments and probe points."""

    def __init__(self, x: np.ndarray, s_max: float, rng: np.random.Generator):
        self.x = x
        self.index = nearest_index(x)
        self.gap = spacing(x, self.index, rng)
        self.s_max = s_max
        self.mean = x.mean(0)
        d = x.shape[1]
        self.factor_inv = np.linalg.inv(np.linalg.cholesky(np.cov(x.T) + 1e-12 * np.eye(d)))
        self.probe = x[rng.choice(len(x), min(1000, len(x)), replace=False)]
        self.grid = orthogonal_grid(d)

    def uncovered(self, maps, threshold: float) -> np.ndarray:
        """Cloud points farther than ``threshold`` spacings from every map's image of the cloud."""
        dist = np.full(len(self.x), np.inf)
        cap = 2 * threshold * self.gap  # only "farther than threshold or not" matters (far queries are slow)
        for A, t in maps:
            dist = np.minimum(dist, nearest_index(self.x @ A.T + t).query(self.x, k=1, distance_upper_bound=cap)[0])
        return self.x[dist > threshold * self.gap]

    def pieces(self, points: np.ndarray, link: float) -> list[np.ndarray]:
        """Connected pieces of ``points`` (linked within ``link`` spacings), largest first, noise dropped."""
        if len(points) < MIN_PIECE:
            return []
        pairs = nearest_index(points).query_pairs(link * self.gap, output_type="ndarray")
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points),) * 2)
        _, label = connected_components(graph, directed=False)
        sizes = np.bincount(label)
        return [points[label == c] for c in np.argsort(-sizes) if sizes[c] >= MIN_PIECE]

    def fit_onto(self, piece: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return moment_map(piece, self.mean, self.factor_inv, self.probe, self.s_max, self.grid)


def _proposals(pieces: list[np.ndarray], everything: np.ndarray, top: int = 4) -> list[np.ndarray]:
    """What a new map may cover: each of the ``top`` largest pieces, each two of them, all uncovered points."""
    first = pieces[:top]
    pairs = [np.concatenate([a, b]) for a, b in itertools.combinations(first, 2)]
    return first + pairs + ([everything] if len(everything) >= MIN_PIECE else [])


def _clusters(points: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``k`` k-means clusters of ``points`` (SciPy), those of at least :data:`MIN_PIECE` points."""
    if k < 2 or len(points) < k * MIN_PIECE:
        return []
    _, label = kmeans2(points, k, seed=rng, minit="++")
    return [points[label == c] for c in range(k) if (label == c).sum() >= MIN_PIECE]


def greedy_cover(cloud: _Cloud, first: tuple[np.ndarray, np.ndarray], num_maps: int, setting: CoverSetting,
                 score: Score, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """``num_maps`` maps: ``first``, then each a moment map onto the uncovered piece that pays most."""
    maps = [first]
    while len(maps) < num_maps:
        rest = cloud.uncovered(maps, setting.threshold)
        pieces = cloud.pieces(rest, setting.link)
        if not pieces:
            return None
        last = len(maps) == num_maps - 1
        best = None
        # Pieces that touch (the Sierpinski tetrahedron's) are one connected piece: k-means
        # clusters of what is left, one per map still to place, are proposed too.
        clusters = _clusters(rest, num_maps - len(maps), rng) if not last else []
        for piece in pieces[:4] + clusters + [rest]:
            A, t = cloud.fit_onto(piece)
            if last:  # the IFS is complete: judge it by what it makes
                stack = maps + [(A, t)]
                value = -score(np.stack([m[0] for m in stack]), np.stack([m[1] for m in stack]))
            else:  # covered points gained, less spill (image points outside the cloud)
                image = cloud.probe @ A.T + t
                spill = float((query_index(cloud.index, image)[0] > setting.threshold * cloud.gap).mean())
                gain = int((query_index(nearest_index(image), rest)[0] <= 2 * setting.threshold * cloud.gap).sum())
                value = gain - SPILL_WEIGHT * len(rest) * spill
            if best is None or value > best[0]:
                best = (value, A, t)
        maps.append((best[1], best[2]))
    return maps


def prepare(x: np.ndarray, s_max: float, rng: np.random.Generator) -> _Cloud:
    """The cloud (unit box, ``(M, d)``) as self-covering works on it (a subset of ≤ :data:`MAX_POINTS`)."""
    if len(x) > MAX_POINTS:
        x = x[rng.choice(len(x), MAX_POINTS, replace=False)]
    return _Cloud(np.ascontiguousarray(x, dtype=np.float64), s_max, rng)


def starts(cloud: _Cloud, num_maps: int, score: Score, rng: np.random.Generator,
           count: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``count`` starts ``(A (N, d, d), t (N, d))``, best attractor score first (none if the cloud
    has no self-similar copy of scale ≥ 0.3)."""
    firsts = largest_self_maps(cloud.x, cloud.index, cloud.gap, cloud.s_max, rng)
    if num_maps == 1:
        return [(A[None], t[None]) for A, t in firsts][:count]
    found = []
    for first in firsts:
        for setting in SETTINGS:
            maps = greedy_cover(cloud, first, num_maps, setting, score, rng)
            if maps is not None:
                A, t = np.stack([m[0] for m in maps]), np.stack([m[1] for m in maps])
                found.append((score(A, t), A, t))
    found.sort(key=lambda f: f[0])
    return [(A, t) for _, A, t in found[:count]]


#: Proposals :func:`reseeds` returns (each is fitted by ``fit_ifs``).
RESEEDS_PER_ROUND = 2


def reseeds(cloud: _Cloud, A: np.ndarray, t: np.ndarray, score: Score, setting: CoverSetting = SETTINGS[0],
            count: int = RESEEDS_PER_ROUND) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``count`` IFS that replace one map of ``(A, t)`` by a moment map onto uncovered points and
    score better than ``(A, t)``, best first."""
    maps = list(zip(A, t))
    rest = cloud.uncovered(maps, setting.threshold)
    pieces = cloud.pieces(rest, setting.link)
    base = score(A, t)
    better = []
    for piece in _proposals(pieces, rest):
        new_A, new_t = cloud.fit_onto(piece)
        for j in range(len(maps)):
            A2, t2 = A.copy(), t.copy()
            A2[j], t2[j] = new_A, new_t
            value = score(A2, t2)
            if value < base:
                better.append((value, A2, t2))
    better.sort(key=lambda b: b[0])
    return [(A2, t2) for _, A2, t2 in better[:count]]
