"""Decoding: iterate a collage operator from a start image to its fixed point at any integer scale."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import CodeError, ConfigurationError
from .codes import Code
from .solvers import DecodeStats, anderson, picard

if TYPE_CHECKING:
    from .operator import CollageOperator

METHODS = ("picard", "anderson")


def decode(
    op: CollageOperator,
    code: Code,
    scale: int = 1,
    init: torch.Tensor | None = None,
    tol: float = 1e-5,
    max_steps: int = 100,
    method: str = "picard",
    anderson_memory: int = 5,
    return_trajectory: bool = False,
    check_contraction: bool = True,
) -> tuple[torch.Tensor, DecodeStats]:
    """Iterate ``op`` with ``code`` to its fixed point at integer ``scale`` (see :meth:`CollageOperator.decode`)."""
    prepared = op.prepare(code, scale)
    if check_contraction:
        require_contraction(op, code)
    B = code.batch_size
    sH, sW = scale * op.size[0], scale * op.size[1]
    dtype = code.bias.dtype
    if init is None:
        init = torch.zeros(B, op.channels, sH, sW, dtype=dtype, device=code.bias.device)
    else:
        op.check_image(init, scale)
        if init.shape[0] != B:
            raise CodeError(f"init batch {init.shape[0]} differs from code batch {B}")
        init = init.to(dtype)

    def step(z: torch.Tensor) -> torch.Tensor:
        return op.apply_prepared(z, prepared)

    if method == "picard":
        return picard(step, init, tol, max_steps, trajectory=return_trajectory)
    if method == "anderson":
        return anderson(step, init, tol, max_steps, memory=anderson_memory, trajectory=return_trajectory)
    raise ConfigurationError(f"method must be one of {METHODS}, got {method!r}")


def require_contraction(op: CollageOperator, code: Code) -> None:
    """Raise :class:`CodeError` unless one step with ``code`` is a contraction (what :func:`decode` checks)."""
    bound = op.lipschitz_bound(code)
    if bound.numel() and float(bound.max()) >= 1.0:
        raise CodeError(
            f"code is not contractive (its Lipschitz bound reaches {float(bound.max()):.4f} >= 1); "
            "use contractive_weights() or pass check_contraction=False"
        )
