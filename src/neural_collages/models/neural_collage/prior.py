"""The learned factorized prior over code integers, exported as integer frequency tables."""

from __future__ import annotations

import math

import torch
from torch import nn

PROB_FLOOR = 2.0**-16  # the smallest probability an exported integer table can hold


class FactorizedPrior(nn.Module):
    """A learned zero-mean two-Laplacian mixture per symbol type, for integers in ``[-bound, bound]``.

    Training sees integers plus uniform noise ``ỹ``; their likelihood is the mixture's mass on
    ``[ỹ − ½, ỹ + ½]`` (the density of a quantised variable plus noise), so the noisy rate is a
    smooth, unbiased stand-in for the coded one. Two components let one table be a spike at zero
    (unused coefficients) and a wide slab (used ones). :meth:`probabilities` gives the exact
    table at the integers (tails folded into the end symbols) that is exported as integer counts.
    """

    def __init__(self, tables: int, bound: int, init_scale: float = 1.0):
        super().__init__()
        self.bound = bound
        self.log_scales = nn.Parameter(torch.tensor([math.log(0.3 * init_scale), math.log(3 * init_scale)]).repeat(tables, 1))
        self.mix_logit = nn.Parameter(torch.zeros(tables))

    @property
    def num_symbols(self) -> int:
        return 2 * self.bound + 1

    def _mass(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Mixture mass on ``[x − ½, x + ½]``, with the tails beyond ±(bound + ½) folded into the ends."""
        scales = self.log_scales.clamp(math.log(0.05), math.log(500.0)).exp()[table]  # (..., 2)
        w = torch.sigmoid(self.mix_logit)[table]
        a = -x.abs().unsqueeze(-1)  # the mass is symmetric: evaluate in the lower tail, where it is exact
        hi = a + 0.5
        lo = a - 0.5
        # Lower-tail CDF of a Laplacian: F(v) = ½ exp(v / b) for v ≤ 0; 1 − ½ exp(−v / b) above.
        f_hi = torch.where(hi <= 0, 0.5 * torch.exp(hi.clamp(max=0) / scales), 1 - 0.5 * torch.exp(-hi.clamp(min=0) / scales))
        f_lo = 0.5 * torch.exp(lo / scales)
        edge = (x.abs() >= self.bound).unsqueeze(-1)
        mass = torch.where(edge, f_hi, f_hi - f_lo)  # the end symbols take the whole tail
        return w * mass[..., 0] + (1 - w) * mass[..., 1]

    def _floored(self, mass: torch.Tensor) -> torch.Tensor:
        return mass.clamp(min=0) * (1 - self.num_symbols * PROB_FLOOR) + PROB_FLOOR

    def probabilities(self) -> torch.Tensor:
        """``(T, K)`` probabilities of the integers ``−bound … bound``, floored like the exported tables."""
        T = self.mix_logit.shape[0]
        k = torch.arange(-self.bound, self.bound + 1, dtype=torch.float32).expand(T, -1)
        table = torch.arange(T).unsqueeze(1).expand_as(k)
        p = self._mass(k, table)
        return self._floored(p / p.sum(-1, keepdim=True))

    def bits(self, values: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Code length in bits of (noisy) ``values`` under their row ``table`` (broadcast to ``values``)."""
        return -torch.log2(self._floored(self._mass(values, table.expand_as(values))))

    def integer_bits(self, symbols: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Code length of integer ``symbols`` (already clamped) under the exported tables' model."""
        p = self.probabilities().flatten()
        return -torch.log2(p[table.expand_as(symbols) * self.num_symbols + symbols + self.bound])
