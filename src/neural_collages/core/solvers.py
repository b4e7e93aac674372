"""Fixed-point solvers for contractive maps ``z ↦ F(z)`` on batches of images.

Both solvers are plain differentiable torch code, so gradients flow through the unrolled
iterations. Residuals are sup norms of the update, per sample; for a map with contraction
factor ``s`` the distance of the returned image to the true fixed point is at most
``residual · s / (1 − s)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import ConfigurationError

StepFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class DecodeStats:
    """How a fixed-point solve went."""

    steps: int  # applications of the step map
    residual: torch.Tensor  # (B,) sup norm of the last update
    converged: bool  # every sample's residual ≤ tol
    method: str
    trajectory: list[torch.Tensor] | None = field(default=None, repr=False)


#: Elements per chunk of the residual: a full-size difference of a 2^26-pixel plane is 0.5 GB.
RESIDUAL_CHUNK = 1 << 22


def _sup_residual(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    a, b = new.detach().flatten(1), old.detach().flatten(1)
    if a.shape[1] <= RESIDUAL_CHUNK:
        return (a - b).abs().amax(dim=1)
    parts = [(a[:, i : i + RESIDUAL_CHUNK] - b[:, i : i + RESIDUAL_CHUNK]).abs().amax(dim=1)
             for i in range(0, a.shape[1], RESIDUAL_CHUNK)]
    return torch.stack(parts, 1).amax(dim=1)


def _check_budget(tol: float, max_steps: int) -> None:
    if not (isinstance(max_steps, int) and not isinstance(max_steps, bool)) or max_steps < 1:
        raise ConfigurationError(f"max_steps must be a positive int, got {max_steps!r}")
    if not tol >= 0:
        raise ConfigurationError(f"tol must be >= 0, got {tol!r}")


def picard(step: StepFn, init: torch.Tensor, tol: float, max_steps: int, trajectory: bool = False,
           step_into: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
    """Iterate ``z ← F(z)`` until the sup-norm update is ≤ ``tol`` or ``max_steps`` is reached.

    With ``tol = 0`` it runs exactly ``max_steps`` steps unless an exact fixed point is hit.
    ``step_into(z, out)``, when given (and no trajectory is kept), computes ``F(z)`` into ``out``:
    the iteration then alternates between ``init`` itself, which it overwrites, and one more
    buffer, so a large decode holds two images rather than three (the caller's ``init``, the
    iterate and the next one). Same arithmetic, same result.
    """
    _check_budget(tol, max_steps)
    if step_into is not None and not trajectory:
        return _picard_in_place(step_into, init, tol, max_steps)
    z = init
    path = [z.detach().clone()] if trajectory else None
    residual = torch.full((init.shape[0],), float("inf"), dtype=init.dtype, device=init.device)
    steps = 0
    while steps < max_steps:
        new = step(z)
        residual = _sup_residual(new, z)
        z = new
        steps += 1
        if path is not None:
            path.append(z.detach().clone())
        if bool((residual <= tol).all()):
            break
    stats = DecodeStats(steps, residual, bool((residual <= tol).all()), "picard", path)
    return z, stats


def _picard_in_place(step_into, z: torch.Tensor, tol: float, max_steps: int):
    spare = torch.empty_like(z)
    residual = torch.full((z.shape[0],), float("inf"), dtype=z.dtype, device=z.device)
    steps = 0
    while steps < max_steps:
        new = step_into(z, spare)
        residual = _sup_residual(new, z)
        z, spare = new, z
        steps += 1
        if bool((residual <= tol).all()):
            break
    del spare
    return z, DecodeStats(steps, residual, bool((residual <= tol).all()), "picard", None)


def anderson(
    step: StepFn,
    init: torch.Tensor,
    tol: float,
    max_steps: int,
    memory: int = 5,
    mixing: float = 1.0,
    regularization: float = 1e-8,
    trajectory: bool = False,
):
    """Anderson-accelerated fixed-point iteration (type II, per sample).

    Keeps the last ``memory`` iterates ``x_i`` and images ``f_i = F(x_i)`` and takes the affine
    combination of them (weights summing to one) that minimises the combined residual
    ``Σ α_i (f_i − x_i)`` in least squares, then mixes ``β Σ α_i f_i + (1 − β) Σ α_i x_i``.
    The returned image is always an ``F`` output, and its residual is ``|F(x) − x|_∞`` at the
    last evaluated iterate, as for :func:`picard`.
    """
    _check_budget(tol, max_steps)
    if memory < 1:
        raise ConfigurationError(f"Anderson memory must be >= 1, got {memory}")
    B = init.shape[0]
    shape = init.shape
    xs: list[torch.Tensor] = []
    fs: list[torch.Tensor] = []
    x = init.flatten(1)
    path = [init.detach().clone()] if trajectory else None
    residual = torch.full((B,), float("inf"), dtype=init.dtype, device=init.device)
    f = x
    steps = 0
    while steps < max_steps:
        f = step(x.reshape(shape)).flatten(1)
        steps += 1
        residual = (f - x).detach().abs().amax(dim=1)
        if path is not None:
            path.append(f.detach().reshape(shape).clone())
        if bool((residual <= tol).all()):
            break
        xs.append(x)
        fs.append(f)
        if len(xs) > memory:
            xs.pop(0)
            fs.pop(0)
        m = len(xs)
        if m == 1:
            x = f
            continue
        X = torch.stack(xs, dim=1)  # (B, m, n)
        Fv = torch.stack(fs, dim=1)
        G = Fv - X
        # Solve min |Σ α_i g_i|² s.t. Σ α_i = 1 through its bordered normal equations.
        gram = G @ G.transpose(1, 2)
        scale = gram.detach().diagonal(dim1=1, dim2=2).amax(dim=1).clamp(min=1e-30)
        gram = gram / scale[:, None, None] + regularization * torch.eye(m, dtype=x.dtype, device=x.device)
        system = torch.zeros(B, m + 1, m + 1, dtype=x.dtype, device=x.device)
        system[:, 0, 1:] = 1
        system[:, 1:, 0] = 1
        system[:, 1:, 1:] = gram
        rhs = torch.zeros(B, m + 1, 1, dtype=x.dtype, device=x.device)
        rhs[:, 0] = 1
        alpha = torch.linalg.solve(system, rhs)[:, 1:]  # (B, m, 1)
        x = mixing * (alpha * Fv).sum(1) + (1 - mixing) * (alpha * X).sum(1)
    z = f.reshape(shape)
    stats = DecodeStats(steps, residual, bool((residual <= tol).all()), "anderson", path)
    return z, stats
