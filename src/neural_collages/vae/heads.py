"""Likelihood heads: the top-down state at 14×14 → Bernoulli logits of a 28×28 digit (at any scale).

:class:`CollageHead` predicts, at each of the 14×14 positions, one 2×2 range cell's dense collage
code — a weight per domain candidate (Σ|w| ≤ ``s_max``), weights of auxiliary patches and a bias —
and decodes it with :class:`~neural_collages.core.CollageOperator` for ``decode_steps`` Picard
steps from zero. The fixed point ``z`` lives on the image's grey scale (background near 0, ink
near 1); its Bernoulli logit is ``gain · (z − ½)`` with one learned ``gain > 0``, so the
probability image is a pointwise, monotone function of a fixed point that is decoded the same
way at every integer scale: the 28s×28s decode, average-pooled by ``s``, is the 28×28 one.

:class:`PixelHead` is the plain baseline: a convolution to four logits per position, shuffled
into the 2×2 pixels of each position (the same geometry, no operator, 28×28 only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core import CollageOperator
from ..core.codes import DenseCode
from ..errors import ConfigurationError
from .config import IMAGE_SIZE, RANGE_SIZE, VAEConfig

#: Decoded pixels (batch × height × width) per chunk when decoding without gradients: a batch of
#: 64 samples at 40× is 80 M pixels, and the dense step holds a few copies of its input.
DECODE_CHUNK_PIXELS = 1 << 23


def _softplus_inverse(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class CollageHead(nn.Module):
    """Top-down state ``(B, width, 14, 14)`` → fixed point ``(B, 1, 28s, 28s)`` and its logits."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        global_aux = config.aux_count if config.aux == "global" else 0
        self.operator = CollageOperator(
            IMAGE_SIZE, channels=1, range_size=RANGE_SIZE,
            domain_size=[d for d, _ in config.domains] or None,
            domain_stride=[s for _, s in config.domains] or None,
            aux_patches=global_aux, s_max=config.s_max)
        self.per_sample_aux = config.aux_count if config.aux == "per_sample" else 0
        self.num_candidates = self.operator.num_candidates
        # Per position: candidate weights, per-sample aux weights, and the range's bias.
        # 1×1: a 3×3 here cost 10 M multiply-adds per digit, a sixth of the whole network (profiled).
        self.code = nn.Conv2d(config.width, self.num_candidates + self.per_sample_aux + 1, 1)
        with torch.no_grad():
            self.code.weight.mul_(0.1)
            self.code.bias.zero_()
        if self.per_sample_aux:
            # Per-sample patches from the pooled top-down state (one set of patches per image).
            self.patches = nn.Linear(config.width, self.per_sample_aux * RANGE_SIZE * RANGE_SIZE)
        self.gain_raw = nn.Parameter(torch.tensor(_softplus_inverse(config.gain_init)))

    @property
    def gain(self) -> torch.Tensor:
        return F.softplus(self.gain_raw)

    def codes(self, h: torch.Tensor) -> tuple[DenseCode, torch.Tensor | None, torch.Tensor | None]:
        """The dense code ``(B, 1, 196, D)`` / ``(B, 1, 196)``, and per-sample aux weights and patches."""
        out = self.code(h).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, R, D + A + 1), row-major ranges
        D, A = self.num_candidates, self.per_sample_aux
        code = self.operator.parametrize_domains(out[..., :D], out[..., D + A])
        if not A:
            return code, None, None
        patches = self.patches(h.mean(dim=(2, 3))).reshape(-1, A, RANGE_SIZE, RANGE_SIZE)
        return code, out[..., D : D + A], patches

    def aux_offset(self, weights: torch.Tensor, patches: torch.Tensor, scale: int) -> torch.Tensor:
        """The per-sample patches' constant contribution, as an image at ``scale``."""
        up = patches.repeat_interleave(scale, -2).repeat_interleave(scale, -1).flatten(2)  # (B, A, P)
        ranges = torch.matmul(weights, up.unsqueeze(1))  # (B, 1, R, P)
        return self.operator.assemble(ranges, scale)

    def decode(self, h: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """The fixed point ``z`` at ``scale`` (``decode_steps`` Picard steps from zero)."""
        code, aux_w, patches = self.codes(h)
        if not torch.is_grad_enabled():
            per_sample = (IMAGE_SIZE * scale) ** 2
            chunk = max(1, DECODE_CHUNK_PIXELS // per_sample)
            if h.shape[0] > chunk:
                parts = []
                for a in range(0, h.shape[0], chunk):
                    sub = DenseCode(code.weights[a : a + chunk], code.bias[a : a + chunk])
                    parts.append(self._iterate(sub, None if aux_w is None else aux_w[a : a + chunk],
                                               None if patches is None else patches[a : a + chunk], scale))
                return torch.cat(parts)
        return self._iterate(code, aux_w, patches, scale)

    def _iterate(self, code: DenseCode, aux_w, patches, scale: int) -> torch.Tensor:
        op = self.operator
        prepared = op.prepare(code, scale)
        offset = None if aux_w is None else self.aux_offset(aux_w, patches, scale)
        side = IMAGE_SIZE * scale
        z = code.bias.new_zeros(code.batch_size, 1, side, side)
        for _ in range(self.config.decode_steps):
            z = op.apply_prepared(z, prepared)
            if offset is not None:
                z = z + offset
        return z

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.gain * (z - 0.5)

    def forward(self, h: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """Bernoulli logits ``(B, 1, 28s, 28s)``."""
        return self.logits(self.decode(h, scale))


class PixelHead(nn.Module):
    """Top-down state ``(B, width, 14, 14)`` → logits ``(B, 1, 28, 28)`` (the baseline; 1× only)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.conv = nn.Conv2d(config.width, RANGE_SIZE * RANGE_SIZE, 3, padding=1)

    def forward(self, h: torch.Tensor, scale: int = 1) -> torch.Tensor:
        if scale != 1:
            raise ConfigurationError("the pixel decoder produces 28x28 logits only (scale 1); "
                                     "only a collage decoder samples at other scales")
        return F.pixel_shuffle(self.conv(h), RANGE_SIZE)
