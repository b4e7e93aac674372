"""Fitting an IFS to a point cloud by the collage theorem for sets.

The cloud ``X`` is normalised to the unit box (the transform is kept: :class:`Normalisation`), then:

1. **Starts.** Up to three starts read off the cloud's self-similarity (``self_cover.py``: its
   largest copy of itself, then maps onto what is left) go first; ``restarts`` random contractive
   IFS (:func:`random_ifs`; every other one with a large first map) take ``screen_steps`` Adam
   steps each on the collage loss and are ranked by it on a fixed sample.
2. **Fitting.** The ``keep`` best continue for ``steps`` steps (self-cover starts at a third of
   the learning rate: they start near a basin and a large rate walks them out of it); each
   attractor is sampled by the chaos game (probabilities from :func:`coverage_probabilities`) and
   scored by its Chamfer distance to the cloud; the best is kept.
3. **Reseeding** (``reseed_rounds`` rounds): one map of the best replaced by a map onto the cloud
   points it leaves uncovered (``self_cover.reseeds``), fitted ``steps`` steps at a tenth of the
   rate, kept if its attractor scores better — the fern's thin stem is found this way.
4. **Refinement** of the best with larger samples and a lower learning rate, kept if its
   attractor scores better.
5. **Polish** on the attractor itself: Adam on Chamfer(attractor sample, cloud) through a
   differentiable chaos game (:func:`_polish`), kept if it scores better.

The collage loss (:func:`_cloud_loss`) is the Chamfer distance between ``X`` and ``∪ w_i(S)``
for random samples ``S`` drawn afresh every step, with a soft-max (Hausdorff-like) term: the
collage's points are matched against the *whole* cloud in a k-d tree (SciPy), the cloud's
against the collage; neighbours are found without gradients and the distances to them
differentiated, as in ICP. The IFS is contractive by construction
(:class:`~neural_collages.ifs.model.IFS`), so every iterate has an attractor.
:func:`amortised_fit` replaces the search by one pass of a trained encoder (``encoder.py``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy.spatial import cKDTree  # the index type

from ..checks import is_int
from ..errors import ConfigurationError
from . import self_cover
from .distances import chamfer, collage_loss, nearest, nearest_index, query_index
from .model import IFS, apply_maps, check_dimension, check_num_maps, check_s_max, largest_singular_values
from .render import chaos_game

#: Largest cloud the fitter accepts (points); the readers have their own, equal, limit.
MAX_CLOUD_POINTS = 20_000_000

# --------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class Normalisation:
    """``unit = (x − centre) / scale + 0.5``: the cloud's bounding box centred in the unit box."""

    centre: tuple
    scale: float

    @classmethod
    def of(cls, x: torch.Tensor) -> "Normalisation":
        lo = x.double().min(0).values
        hi = x.double().max(0).values
        scale = float((hi - lo).max())
        if not scale > 0 or not math.isfinite(scale):
            raise ConfigurationError("the cloud has no extent (all points coincide)")
        return cls(tuple(float(v) for v in (lo + hi) / 2), scale)

    @classmethod
    def identity(cls, dim: int) -> "Normalisation":
        return cls(tuple([0.5] * dim), 1.0)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        c = torch.tensor(self.centre, dtype=x.dtype)
        return (x - c) / self.scale + 0.5

    def from_unit(self, y: torch.Tensor) -> torch.Tensor:
        c = torch.tensor(self.centre, dtype=y.dtype)
        return (y - 0.5) * self.scale + c

    def maps_to_cloud(self, A: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same maps in the cloud's coordinates: ``A`` unchanged, offsets moved and scaled."""
        A = A.double()
        c = torch.tensor(self.centre, dtype=torch.float64)
        shift = c / self.scale - 0.5  # unit = x / s − shift
        t_cloud = self.scale * (t.double() + shift - A @ shift)
        return A, t_cloud


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class FitOptions:
    """How to fit: restarts (screened, then the best continued), steps, subsample sizes, the loss."""

    restarts: int = 24
    keep: int = 4
    screen_steps: int = 60
    steps: int = 200
    refine_steps: int = 150
    polish_steps: int = 100
    subsample: int = 1024
    refine_subsample: int = 4096
    eval_points: int = 20_000
    lr: float = 0.03
    s_max: float = 0.95
    hausdorff_weight: float = 0.05
    seed: int = 0
    self_cover: bool = True
    reseed_rounds: int = 2

    def __post_init__(self):
        if not isinstance(self.self_cover, bool):
            raise ConfigurationError(f"self_cover must be True or False, got {self.self_cover!r}")
        for name, low, high in (("restarts", 0, 1000), ("keep", 1, 1000), ("screen_steps", 0, 100_000),
                                ("reseed_rounds", 0, 100),
                                ("steps", 0, 100_000), ("refine_steps", 0, 100_000), ("polish_steps", 0, 100_000),
                                ("subsample", 8, 65_536), ("refine_subsample", 8, 1 << 20),
                                ("eval_points", 16, 10_000_000), ("seed", 0, 2**63 - 1)):
            value = getattr(self, name)
            if not is_int(value) or not low <= value <= high:
                raise ConfigurationError(f"{name} must be an integer in {low}..{high}, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigurationError(f"lr must be a positive finite number, got {self.lr!r}")
        check_s_max(self.s_max)
        if not (isinstance(self.hausdorff_weight, (int, float)) and math.isfinite(self.hausdorff_weight)
                and self.hausdorff_weight >= 0):
            raise ConfigurationError(f"hausdorff_weight must be a finite number >= 0, got {self.hausdorff_weight!r}")


@dataclass
class FitResult:
    """A fitted IFS (in unit-box coordinates) with the cloud's normalisation and what fitting measured."""

    model: IFS
    normalisation: Normalisation
    probabilities: torch.Tensor  # (N,) float64: each map's share of the cloud (see coverage_probabilities)
    collage_loss: float  # Chamfer(S, ∪ w_i(S)) in unit-box units, on a refine_subsample-point sample
    attractor_chamfer: float  # Chamfer(attractor sample, cloud subsample), unit-box units, eval_points each
    restart_scores: list = field(default_factory=list)
    seconds: float = 0.0

    def maps(self):
        """``(A, t, p)`` in unit-box coordinates (float64)."""
        A, t, _ = self.model.maps()
        return A.double(), t.double(), self.probabilities.clone()

    def maps_in_cloud_coordinates(self):
        A, t, p = self.maps()
        A, t = self.normalisation.maps_to_cloud(A, t)
        return A, t, p

    def sample(self, points: int, seed: int = 0, **kwargs) -> torch.Tensor:
        """``points`` points of the fitted attractor, in the cloud's own coordinates."""
        A, t, p = self.maps()
        return self.normalisation.from_unit(chaos_game(A, t, p, points, seed=seed, **kwargs))


def check_cloud(points, num_maps: int | None = None) -> torch.Tensor:
    """A cloud as float32 ``(M, 2|3)``: ConfigurationError for anything else (NaN, too few points, ...)."""
    if isinstance(points, np.ndarray):
        points = torch.from_numpy(points)
    if not isinstance(points, torch.Tensor):
        raise ConfigurationError(f"a cloud must be an array of points, got {type(points).__name__}")
    if points.dim() != 2 or points.shape[1] not in (2, 3):
        raise ConfigurationError(f"a cloud must have shape (M, 2) or (M, 3), got {tuple(points.shape)}")
    if points.shape[0] > MAX_CLOUD_POINTS:
        raise ConfigurationError(f"the cloud has {points.shape[0]} points; at most {MAX_CLOUD_POINTS} are accepted")
    if not (points.is_floating_point() or points.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
        raise ConfigurationError(f"a cloud must hold numbers, got {points.dtype}")
    points = points.double()
    if not bool(torch.isfinite(points).all()):
        raise ConfigurationError("the cloud has NaN or infinite coordinates")
    minimum = 2 if num_maps is None else max(2, num_maps)
    if points.shape[0] < minimum:
        raise ConfigurationError(f"the cloud has {points.shape[0]} points; fitting {num_maps or 1} maps needs at "
                                 f"least {minimum}")
    return points.float()


def random_ifs(n: int, d: int, x: torch.Tensor, s_max: float, g: torch.Generator, big_map: bool = False) -> IFS:
    """A random contractive IFS whose maps send the cloud ``x`` (unit box) onto parts of itself.

    Every map gets its own size, drawn uniformly in ``[0.15, 0.9]·s_max`` (natural fractals often
    have one large map — the fern's is 0.85 — next to small ones), a random rotation, and an
    offset that shrinks the cloud towards a random point of it.
    """
    model = IFS(n, d, s_max=s_max, generator=g)
    with torch.no_grad():
        size = (0.15 + 0.75 * torch.rand(n, 1, generator=g)) * s_max
        if big_map:  # map 0: a slightly rotated shrink by 0.6-0.9 (the fern's frond, a spiral's turn)
            size[0] = (0.6 + 0.3 * torch.rand(1, generator=g)) * s_max
            model.rot_v[0] = model.rot_u[0] - 0.3 * (2 * torch.rand(model.rot_u.shape[1], generator=g) - 1)
        spread = 1 + 0.3 * (torch.rand(n, d, generator=g) - 0.5)
        model.raw_sv.copy_(torch.atanh((size * spread / s_max).clamp(max=0.98)))
        A, _, _ = model()
        centre = x.mean(0)
        anchor = x[torch.randint(len(x), (n,), generator=g)]
        target = anchor + (centre - anchor) * size  # bigger maps stay nearer the centre
        model.offset.copy_(target - A @ centre)
    return model


def _holding(A, t, s_max: float) -> IFS:
    """An :class:`IFS` holding given maps with the bound ``s_max`` (or just above their own, if larger),
    so that further fitting cannot loosen the contraction the maps came with."""
    bound = float(largest_singular_values(torch.as_tensor(A)).max())
    return IFS.from_maps(A, t, s_max=min(0.999, max(s_max, bound + 1e-6)))


def coverage_probabilities(A: torch.Tensor, t: torch.Tensor, x: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """Each map's share of the cloud: the fraction of ``x``'s points whose nearest collage point is its.

    This is the invariant measure's weight of each piece ``w_i(X)``, what the chaos game's
    probabilities should be for its points to be spread like the cloud's (``p ∝ |det A|``
    is right only for non-overlapping pieces of uniform density). Floored so no map is never used.
    """
    y = apply_maps(A.double(), t.double(), x.double())  # (N·M, d), map-major
    _, j = nearest(x.double().numpy(), y.numpy())
    counts = np.bincount(j // len(x), minlength=A.shape[0]).astype(np.float64)
    p = torch.from_numpy(counts / counts.sum()).clamp(min=floor)
    return p / p.sum()


def _attractor_score(A, t, p, x_eval: np.ndarray, points: int, seed: int) -> float:
    y = chaos_game(A.double(), t.double(), p, points, seed=seed, walkers=4096, burn_in=24)
    return chamfer(y, x_eval)


def planned_steps(options: FitOptions) -> int:
    """The optimisation steps :func:`fit_ifs` takes at most (reseeding stops early when nothing improves)."""
    reseeding = options.reseed_rounds * self_cover.RESEEDS_PER_ROUND * options.steps
    return (options.restarts * options.screen_steps + options.keep * options.steps + reseeding
            + options.refine_steps + options.polish_steps)


def fit_ifs(cloud, num_maps: int, options: FitOptions | None = None,
            progress: Callable[[int], object] | None = None, initial=None) -> FitResult:
    """Fit ``num_maps`` contractive affine maps to ``cloud (M, 2|3)`` (any coordinates); see the module docstring.

    ``progress`` is called with 1 after every optimisation step (all stages). ``initial``: maps
    ``(A, t)`` in the unit box of the cloud's normalisation (e.g. an encoder's prediction) that
    skip the screening and are always among the kept starts.
    """
    options = options or FitOptions()
    num_maps = check_num_maps(num_maps)
    x_all = check_cloud(cloud, num_maps)
    d = check_dimension(x_all.shape[1])
    if options.restarts == 0 and initial is None and not options.self_cover:
        raise ConfigurationError("restarts must be at least 1 without initial maps or self-cover starts")
    start = time.perf_counter()
    norm = Normalisation.of(x_all)
    x_unit = norm.to_unit(x_all.double()).float()
    g = torch.Generator().manual_seed(int(options.seed))
    M = len(x_unit)
    x_eval = x_unit[torch.randperm(M, generator=g)[: options.eval_points]].double().numpy()
    n_eval = min(options.eval_points, M)
    x_cover = x_unit[torch.randperm(M, generator=g)[: min(M, options.refine_subsample)]]
    index = nearest_index(x_unit.double().numpy())

    def scored(A, t, seed: int) -> tuple[float, torch.Tensor]:
        """The attractor score of maps ``(A, t)`` and the probabilities it was sampled with."""
        A, t = torch.as_tensor(A, dtype=torch.float64), torch.as_tensor(t, dtype=torch.float64)
        p = coverage_probabilities(A, t, x_cover)
        return _attractor_score(A, t, p, x_eval, n_eval, seed=seed), p

    def maps_score(A, t) -> float:  # what self-cover ranks its starts and reseeds by
        return scored(A, t, options.seed)[0]

    def judge(candidate: IFS, seed: int) -> tuple[float, torch.Tensor]:
        return scored(*candidate.maps()[:2], seed)

    # 1. Starts: given maps and self-cover starts first (not screened), then every random restart
    # a few steps, ranked by its collage loss on a fixed sample. Entries: (rank key, order, model, lr).
    screened = []
    if initial is not None:
        A0, t0 = initial
        screened.append((-math.inf, -1, _holding(A0, t0, options.s_max), options.lr))
    cover = None
    if options.self_cover or options.reseed_rounds:
        cover = self_cover.prepare(x_unit.double().numpy(), options.s_max, np.random.default_rng(options.seed))
    if options.self_cover:
        for A0, t0 in self_cover.starts(cover, num_maps, maps_score, np.random.default_rng(options.seed)):
            screened.append((-math.inf, len(screened), _holding(A0, t0, options.s_max), options.lr / 3))
    for r in range(options.restarts):
        model = random_ifs(num_maps, d, x_unit, options.s_max, g, big_map=r % 2 == 1)
        loss = _cloud_loss(model, x_unit, index, options.subsample, options.hausdorff_weight, g)
        _adam(model, options.screen_steps, options.lr, loss, progress)
        with torch.no_grad():
            screened.append((float(collage_loss(*model()[:2], x_cover)), len(screened), model, options.lr))
    if not screened:
        raise ConfigurationError("the cloud has no self-similar copy to start from; use restarts >= 1")
    screened.sort(key=lambda item: item[:2])

    # 2. The best ones continue; each attractor is then sampled and scored against the cloud.
    scores, best = [], None
    for rank, (_, _, model, lr) in enumerate(screened[: options.keep]):
        loss = _cloud_loss(model, x_unit, index, options.subsample, options.hausdorff_weight, g)
        _adam(model, options.steps, lr, loss, progress)
        score, p = judge(model, options.seed + rank)
        scores.append(score)
        if best is None or score < best[0]:
            best = (score, model, p)
    score, model, p = best
    # 3. Reseeding: a map moved onto what the IFS leaves uncovered, kept if the attractor improves.
    for round_ in range(options.reseed_rounds):
        A, t, _ = model.maps()
        improved = False
        for k, (A2, t2) in enumerate(self_cover.reseeds(cover, A.double().numpy(), t.double().numpy(), maps_score)):
            candidate = _holding(A2, t2, options.s_max)
            loss = _cloud_loss(candidate, x_unit, index, options.subsample, options.hausdorff_weight, g)
            _adam(candidate, options.steps, options.lr * 0.1, loss, progress)
            candidate_score, candidate_p = judge(candidate, options.seed + 5_000 + 10 * round_ + k)
            if candidate_score < score:
                model, score, p, improved = candidate, candidate_score, candidate_p, True
        if not improved:
            break
    # 4. Refinement of the best against the whole cloud; 5. polish on the attractor itself (the
    # quantity reported). Each is kept only if its attractor scores better.
    stages = []
    if options.refine_steps:
        stages.append((lambda m, p: _refine(m, x_unit, index, options, g, progress), 10_000))
    if options.polish_steps:
        stages.append((lambda m, p: _polish(m, p, x_unit, x_cover, index, options, g, progress), 20_000))
    for stage, seed in stages:
        candidate = stage(model, p)
        candidate_score, candidate_p = judge(candidate, options.seed + seed)
        if candidate_score < score:
            model, score, p = candidate, candidate_score, candidate_p
    with torch.no_grad():
        final_collage = float(collage_loss(*model()[:2], x_cover))
    return FitResult(model, norm, p, final_collage, score, scores, time.perf_counter() - start)


#: Chaos-game steps the attractor polish differentiates through (0.85^24 < 2 %: the start is all but forgotten).
POLISH_DEPTH = 24
POLISH_WALKERS = 2048


def _polish(model: IFS, p: torch.Tensor, x_unit: torch.Tensor, x_cover: torch.Tensor, index: cKDTree,
            options: FitOptions, g: torch.Generator, progress) -> IFS:
    """Adam on Chamfer(attractor sample, cloud), the attractor sampled by a differentiable chaos game.

    Walkers start at cloud points and take :data:`POLISH_DEPTH` random maps (drawn with the
    current probabilities, re-estimated every 25 steps); their end points are attractor points
    that depend smoothly on the maps, matched against the cloud as in :func:`_cloud_loss`.
    """
    import copy

    model = copy.deepcopy(model)
    M = len(x_unit)
    params = [q for q in model.parameters() if q.requires_grad]
    optimiser = torch.optim.Adam(params, lr=options.lr * 0.1)
    for step in range(options.polish_steps):
        A, t, _ = model()
        picks = torch.multinomial(p.float(), POLISH_WALKERS * POLISH_DEPTH, replacement=True, generator=g)
        z = x_unit[torch.randint(M, (POLISH_WALKERS,), generator=g)]
        for k in picks.view(POLISH_DEPTH, POLISH_WALKERS):
            z = torch.einsum("wij,wj->wi", A[k], z) + t[k]
        _, i1 = query_index(index, z.detach().double().numpy())
        spill = (z - x_unit[torch.from_numpy(i1)]).norm(dim=1)
        q = x_unit[torch.randint(M, (POLISH_WALKERS,), generator=g)]
        _, i2 = nearest(q.double().numpy(), z.detach().double().numpy())
        cover = (q - z[torch.from_numpy(i2)]).norm(dim=1)
        loss = 0.5 * (spill.mean() + cover.mean())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % 25 == 24:
            A, t, _ = model.maps()
            p = coverage_probabilities(A, t, x_cover)
        if progress is not None:
            progress(1)
    return model


def _adam(model: IFS, steps: int, lr: float, loss_fn, progress, params=None) -> float:
    params = [p for p in (params or model.parameters()) if p.requires_grad]
    if not steps:
        return float("nan")
    optimiser = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps, eta_min=lr * 0.05)
    loss = None
    for _ in range(steps):
        loss = loss_fn()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress is not None:
            progress(1)
    return float(loss.detach())


def _refine(model: IFS, x_unit: torch.Tensor, index: cKDTree, options: FitOptions, g: torch.Generator,
            progress) -> IFS:
    """Refinement against the whole cloud with larger samples and a lower learning rate."""
    import copy

    model = copy.deepcopy(model)
    loss = _cloud_loss(model, x_unit, index, options.refine_subsample, 0.0, g)
    _adam(model, options.refine_steps, options.lr * 0.2, loss, progress)
    return model


def _cloud_loss(model: IFS, x_unit: torch.Tensor, index: cKDTree, m: int, hausdorff_weight: float,
                g: torch.Generator, cover_factor: int = 1):
    """The collage loss against the whole cloud, on fresh random samples every step.

    ``spill``: every point of the collage ``∪ w_i(S)`` (``S``: ``m`` cloud points) to its nearest
    cloud point, found in the k-d tree of the *whole* cloud, so this term has no sampling floor;
    ``cover``: ``m`` other cloud points to their nearest collage point. Nearest neighbours are
    found without gradients and the Euclidean distances to them differentiated (as in ICP).
    """
    M = len(x_unit)
    m = min(M, m)

    def soft_max(dist: torch.Tensor) -> torch.Tensor:  # log-mean-exp: a smooth stand-in for the max
        beta = 50.0
        return (torch.logsumexp(beta * dist, 0) - math.log(dist.numel())) / beta

    def loss() -> torch.Tensor:
        s = x_unit[torch.randint(M, (m * cover_factor,), generator=g)]
        q = x_unit[torch.randint(M, (m,), generator=g)]
        A, t, _ = model()
        y = apply_maps(A, t, s)  # (N·m·cover_factor, d), map-major
        n = A.shape[0]
        spill_y = y.reshape(n, -1, y.shape[1])[:, :m].reshape(-1, y.shape[1])
        _, i1 = query_index(index, spill_y.detach().double().numpy())
        spill = (spill_y - x_unit[torch.from_numpy(i1)]).norm(dim=1)
        _, i2 = nearest(q.double().numpy(), y.detach().double().numpy())
        cover = (q - y[torch.from_numpy(i2)]).norm(dim=1)
        value = 0.5 * (spill.mean() + cover.mean())
        if hausdorff_weight:
            value = value + hausdorff_weight * 0.5 * (soft_max(spill) + soft_max(cover))
        return value

    return loss


def amortised_fit(cloud, encoder, refine_steps: int = 0, options: FitOptions | None = None,
                  progress: Callable[[int], object] | None = None) -> FitResult:
    """The encoder's IFS for ``cloud`` (one forward pass), optionally refined by fitting from it.

    ``encoder`` is an :class:`~neural_collages.ifs.encoder.IFSEncoder`; the number of maps and the
    dimension are its own. With ``refine_steps`` > 0 the prediction is the one start of
    :func:`fit_ifs` (no random restarts, no self-cover starts): ``refine_steps`` fitting steps, then
    the reseeding, refinement and attractor polish stages of ``options``.
    """
    from .encoder import predict_maps

    options = options or FitOptions()
    if not is_int(refine_steps) or not 0 <= refine_steps <= 100_000:
        raise ConfigurationError(f"refine_steps must be an integer in 0..100000, got {refine_steps!r}")
    start = time.perf_counter()
    x_all = check_cloud(cloud, encoder.config.num_maps)
    if x_all.shape[1] != encoder.config.dim:
        raise ConfigurationError(f"this encoder reads {encoder.config.dim}-D clouds, the cloud is {x_all.shape[1]}-D")
    norm = Normalisation.of(x_all)
    x_unit = norm.to_unit(x_all.double()).float()
    A, t = predict_maps(encoder, x_unit, seed=options.seed)
    if refine_steps:
        from dataclasses import replace

        # The encoder's maps are the one start: no random restarts, no self-cover starts; the
        # local stages (steps, reseeding, refinement, polish) refine it.
        refined = fit_ifs(cloud, encoder.config.num_maps,
                          replace(options, restarts=0, keep=1, steps=refine_steps, self_cover=False),
                          progress, initial=(A, t))
        refined.seconds = time.perf_counter() - start
        return refined
    model = _holding(A, t, encoder.config.s_max)
    g = torch.Generator().manual_seed(int(options.seed))
    M = len(x_unit)
    x_cover = x_unit[torch.randperm(M, generator=g)[: min(M, options.refine_subsample)]]
    p = coverage_probabilities(A, t, x_cover)
    x_eval = x_unit[torch.randperm(M, generator=g)[: options.eval_points]].double().numpy()
    score = _attractor_score(A, t, p, x_eval, min(options.eval_points, M), seed=options.seed)
    with torch.no_grad():
        loss = float(collage_loss(*model()[:2], x_cover))
    return FitResult(model, norm, p, loss, score, [score], time.perf_counter() - start)
