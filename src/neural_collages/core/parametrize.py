"""Contraction of a code on a given operator: its Lipschitz bound and contractive parametrisations.

:func:`~neural_collages.core.codes.contraction_bound` bounds a code on its own (all weights);
here the operator is known, so auxiliary patches (constants) are left out of the bound and a
centred operator's factor 2 is accounted for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import CodeError
from .codes import Code, DenseCode, SparseCode, check_s_max, contractive_weights

if TYPE_CHECKING:
    from .operator import CollageOperator


def lipschitz_bound(op: CollageOperator, code: Code) -> torch.Tensor:
    """Sup-norm Lipschitz bound of one step of ``op`` with ``code``, per sample.

    ``max_{c,r} Σ_d |w_crd|`` over the *domain* candidates only: auxiliary patches do not depend
    on the image, so their weights add constants and never affect the contraction (a code may
    weight them freely). Doubled for a centred operator, since ``‖x − mean(x)‖_∞ ≤ 2‖x‖_∞``.
    """
    n_dom = op.num_candidates - op.num_aux
    if isinstance(code, DenseCode):
        weights = code.weights[..., :n_dom]
    elif isinstance(code, SparseCode):
        weights = torch.where(code.index < n_dom, code.scale, torch.zeros_like(code.scale))
    else:
        raise CodeError(f"expected a DenseCode or SparseCode, got {type(code).__name__}")
    if weights.shape[-1] == 0:
        bound = torch.zeros(weights.shape[0], dtype=weights.dtype, device=weights.device)
    else:
        bound = weights.detach().abs().sum(dim=-1).flatten(1).amax(dim=1)
    return 2 * bound if op.centred else bound


def parametrize(op: CollageOperator, weights: torch.Tensor, bias: torch.Tensor) -> DenseCode:
    """A :class:`DenseCode` with contraction bound ≤ ``op.s_max`` (all candidates) from unconstrained tensors."""
    return DenseCode.from_unconstrained(weights, bias, op.s_max)


def parametrize_domains(
    op: CollageOperator, weights: torch.Tensor, bias: torch.Tensor, s_max: float | None = None
) -> DenseCode:
    """A :class:`DenseCode` whose *domain* weights are contractive and whose aux weights are free.

    The domain part goes through :func:`contractive_weights` with ``s_max`` (default ``op.s_max``,
    halved for a centred operator) so that :func:`lipschitz_bound` ≤ ``s_max``; the
    auxiliary-patch weights (constants) pass unchanged.
    """
    s_max = op.s_max if s_max is None else check_s_max(s_max)
    if op.centred:
        s_max = s_max / 2
    n_dom = op.num_candidates - op.num_aux
    if weights.shape[-1] != op.num_candidates:
        raise CodeError(f"expected {op.num_candidates} weights per range, got {weights.shape[-1]}")
    dom = contractive_weights(weights[..., :n_dom], s_max) if n_dom else weights[..., :0]
    return DenseCode(torch.cat([dom, weights[..., n_dom:]], dim=-1), bias)
