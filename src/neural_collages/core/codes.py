"""Collage codes: the parameters of a collage operator, and their contractive parametrisation.

Two kinds of code are decoded by the same :meth:`CollageOperator.step`:

* :class:`DenseCode` — a weight for every (range, candidate) pair plus a bias per range, the
  natural output of a network: ``weights`` has shape ``(B, Cw, R, D)``, ``bias`` ``(B, C, R)``.
* :class:`SparseCode` — ``k`` chosen candidates per range, as classic fractal coding stores them:
  ``index`` ``(B, Cw, R, k)`` (int64), ``scale`` ``(B, Cw, R, k)``, ``bias`` ``(B, C, R)``.

``Cw`` is ``C`` for per-channel maps and ``1`` for maps shared across channels (the bias is
always per channel). A range cell is ``Σ_d w_rd · candidate_d + bias_r``; every candidate pixel
is an average of image pixels, so ``|F(z) − F(z')|_∞ ≤ max_r Σ_d |w_rd| · |z − z'|_∞``.
:func:`contraction_bound` reports that factor, and :func:`contractive_weights` maps
unconstrained tensors to weights whose factor is at most ``s_max < 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import CodeError, ConfigurationError


def check_s_max(s_max: float) -> float:
    s_max = float(s_max)
    if not 0.0 < s_max < 1.0:
        raise ConfigurationError(f"s_max must lie in (0, 1) for a contraction, got {s_max}")
    return s_max


def contractive_weights(unconstrained: torch.Tensor, s_max: float, dim: int = -1) -> torch.Tensor:
    """Map unconstrained weights to weights with ``Σ |w| ≤ s_max`` along ``dim``.

    ``w = s_max · u / max(1, Σ|u|)``: the identity (times ``s_max``) inside the unit L1 ball and
    the radial projection onto it outside. Unlike a ``tanh`` squashing it does not shrink small
    weights, so a network's outputs keep their meaning; it is differentiable almost everywhere.
    """
    s_max = check_s_max(s_max)
    norm = unconstrained.abs().sum(dim=dim, keepdim=True)
    return s_max * unconstrained / torch.clamp(norm, min=1.0)


@dataclass
class DenseCode:
    """A weight per (range, candidate) pair and a bias per range (see module docstring)."""

    weights: torch.Tensor  # (B, Cw, R, D)
    bias: torch.Tensor  # (B, C, R)

    @classmethod
    def from_unconstrained(cls, weights: torch.Tensor, bias: torch.Tensor, s_max: float) -> "DenseCode":
        """A code whose contraction bound is at most ``s_max``, from unconstrained tensors."""
        return cls(contractive_weights(weights, s_max, dim=-1), bias)

    @property
    def batch_size(self) -> int:
        return self.bias.shape[0]

    def to(self, *args, **kwargs) -> "DenseCode":
        return DenseCode(self.weights.to(*args, **kwargs), self.bias.to(*args, **kwargs))

    def detach(self) -> "DenseCode":
        return DenseCode(self.weights.detach(), self.bias.detach())


@dataclass
class SparseCode:
    """``k`` candidates per range: which ones (``index``), their weights (``scale``), and a bias."""

    index: torch.Tensor  # (B, Cw, R, k) int64
    scale: torch.Tensor  # (B, Cw, R, k)
    bias: torch.Tensor  # (B, C, R)

    @classmethod
    def from_unconstrained(
        cls, index: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, s_max: float
    ) -> "SparseCode":
        """A code whose contraction bound is at most ``s_max``, from unconstrained scales."""
        return cls(index, contractive_weights(scale, s_max, dim=-1), bias)

    @property
    def batch_size(self) -> int:
        return self.bias.shape[0]

    @property
    def k(self) -> int:
        return self.index.shape[-1]

    def to(self, *args, **kwargs) -> "SparseCode":
        # Only move the index; it must stay int64 whatever dtype the floats are cast to.
        device = kwargs.get("device")
        for arg in args:
            if isinstance(arg, (torch.device, str)):
                device = arg
        index = self.index.to(device) if device is not None else self.index
        return SparseCode(index, self.scale.to(*args, **kwargs), self.bias.to(*args, **kwargs))

    def detach(self) -> "SparseCode":
        return SparseCode(self.index, self.scale.detach(), self.bias.detach())


Code = DenseCode | SparseCode


def code_weights(code: Code) -> torch.Tensor:
    """The weights of a code along its last dimension (dense: all candidates, sparse: the k chosen)."""
    if isinstance(code, DenseCode):
        return code.weights
    if isinstance(code, SparseCode):
        return code.scale
    raise CodeError(f"expected a DenseCode or SparseCode, got {type(code).__name__}")


def contraction_bound(code: Code) -> torch.Tensor:
    """Per-sample sup-norm Lipschitz bound of the collage step: ``max_{c,r} Σ_d |w_crd|``, shape (B,)."""
    weights = code_weights(code)
    if weights.shape[-1] == 0:
        return torch.zeros(weights.shape[0], dtype=weights.dtype, device=weights.device)
    return weights.detach().abs().sum(dim=-1).flatten(1).amax(dim=1)
