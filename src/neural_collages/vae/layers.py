"""Building blocks of the hierarchical VAE (the VDVAE recipe, Child 2021, at MNIST size).

A :class:`Block` is a bottleneck residual unit (GELU, 1×1 → 3×3 → 3×3 → 1×1; 1×1 kernels at
resolutions ≤ 2, where a 3×3 only sees padding). A :class:`TopDownBlock` is one latent group:
the prior ``p(z | h)`` and posterior ``q(z | h, a)`` are diagonal Gaussians from small blocks,
``z`` is projected back into the top-down state ``h``, and a residual block follows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)


class Block(nn.Module):
    """``x → x + f(x)`` (or just ``f(x)`` when the widths differ); ``f`` a GELU bottleneck."""

    def __init__(self, width_in: int, middle: int, width_out: int, resolution: int, residual: bool = True,
                 zero_last: bool = False, last_scale: float = 1.0):
        super().__init__()
        k = 3 if resolution > 2 else 1
        self.c1 = nn.Conv2d(width_in, middle, 1)
        self.c2 = nn.Conv2d(middle, middle, k, padding=k // 2)
        self.c3 = nn.Conv2d(middle, middle, k, padding=k // 2)
        self.c4 = nn.Conv2d(middle, width_out, 1)
        self.residual = residual and width_in == width_out
        with torch.no_grad():
            if zero_last:
                self.c4.weight.zero_()
            else:
                self.c4.weight.mul_(last_scale)
            self.c4.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.gelu(x))
        h = self.c2(F.gelu(h))
        h = self.c3(F.gelu(h))
        h = self.c4(F.gelu(h))
        return x + h if self.residual else h


def gaussian_kl(q_mean, q_logstd, p_mean, p_logstd) -> torch.Tensor:
    """``KL(q ‖ p)`` of diagonal Gaussians, elementwise."""
    return (p_logstd - q_logstd + (torch.exp(2 * q_logstd) + (q_mean - p_mean) ** 2)
            / (2 * torch.exp(2 * p_logstd)) - 0.5)


def gaussian_log_density(z, mean, logstd) -> torch.Tensor:
    """``log N(z; mean, exp(logstd)²)``, elementwise."""
    return -0.5 * (LOG_2PI + 2 * logstd + ((z - mean) * torch.exp(-logstd)) ** 2)


class TopDownBlock(nn.Module):
    """One latent group at one resolution: prior, posterior, ``z`` → state, residual block."""

    def __init__(self, width: int, middle: int, zdim: int, resolution: int, depth_scale: float):
        super().__init__()
        self.zdim = zdim
        self.posterior = Block(2 * width, middle, 2 * zdim, resolution, residual=False)
        # The prior's output starts at zero: an N(0, 1) prior and no change to h, so a deep
        # stack begins as a near-identity (VDVAE's init).
        self.prior = Block(width, middle, 2 * zdim + width, resolution, residual=False, zero_last=True)
        self.z_proj = nn.Conv2d(zdim, width, 1)
        with torch.no_grad():
            self.z_proj.weight.mul_(depth_scale)
        self.resnet = Block(width, middle, width, resolution, last_scale=depth_scale)

    def prior_of(self, h: torch.Tensor):
        out = self.prior(h)
        p_mean, p_logstd, h_extra = out[:, : self.zdim], out[:, self.zdim : 2 * self.zdim], out[:, 2 * self.zdim :]
        return p_mean, p_logstd, h + h_extra

    def forward(self, h: torch.Tensor, activation: torch.Tensor | None, generator=None, temperature: float = 1.0,
                use_mean: bool = False):
        """``(h', stats)``. With ``activation`` (encoder features) ``z ~ q``; without it ``z ~ p``.

        ``stats`` holds the analytic KL (``kl``, summed per sample) and, for importance
        weighting, ``log q(z) − log p(z)`` of the drawn ``z`` (``log_ratio``), plus ``z``.
        """
        p_mean, p_logstd, h = self.prior_of(h)
        if activation is None:
            mean, logstd = p_mean, p_logstd
        else:
            q = self.posterior(torch.cat([h, activation], dim=1))
            mean, logstd = q[:, : self.zdim], q[:, self.zdim :]
        if use_mean:
            z = mean
        else:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(logstd) * eps * temperature
        stats = {"z": z}
        if activation is not None:
            stats["kl"] = gaussian_kl(mean, logstd, p_mean, p_logstd).flatten(1).sum(1)
            stats["log_ratio"] = (gaussian_log_density(z, mean, logstd)
                                  - gaussian_log_density(z, p_mean, p_logstd)).flatten(1).sum(1)
        return self.resnet(h + self.z_proj(z)), stats
