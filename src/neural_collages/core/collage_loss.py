"""The collage theorem as a training objective: ``‖x − F(x)‖`` bounds ``‖x − z*‖`` without a solve."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import CodeError, ConfigurationError
from .codes import Code

if TYPE_CHECKING:
    from .operator import CollageOperator


def collage_loss(op: CollageOperator, x: torch.Tensor, code: Code, reduction: str = "mean") -> torch.Tensor:
    """Collage loss ``‖x − F(x)‖²`` (mean squared error per sample, or its mean over the batch).

    By the collage theorem ``‖x − z*‖ ≤ ‖x − F(x)‖ / (1 − s)``, so it trains codes without
    solving for the fixed point (see :func:`collage_error_bound`).
    """
    err = (x - op.step(x, code)).pow(2).flatten(1).mean(dim=1)
    if reduction == "mean":
        return err.mean()
    if reduction == "none":
        return err
    raise ConfigurationError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def collage_error_bound(op: CollageOperator, x: torch.Tensor, code: Code) -> torch.Tensor:
    """Upper bound ``‖x − F(x)‖_∞ / (1 − s)`` on ``‖x − z*‖_∞`` per sample (collage theorem)."""
    s = op.lipschitz_bound(code)
    if float(s.max()) >= 1:
        raise CodeError("the collage theorem needs a contractive code (bound < 1)")
    gap = (x - op.step(x, code)).detach().abs().flatten(1).amax(dim=1)
    return gap / (1 - s)
