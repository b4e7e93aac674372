"""Random valid codes for an operator: tests, demos and throughput benchmarks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..checks import positive_int
from ..errors import ConfigurationError
from .codes import Code, DenseCode, SparseCode

if TYPE_CHECKING:
    from .operator import CollageOperator


def random_code(
    op: CollageOperator,
    batch_size: int = 1,
    generator: torch.Generator | None = None,
    kind: str = "dense",
    k: int = 1,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> Code:
    """A random code with Lipschitz bound ≤ ``op.s_max``; ``kind`` is ``"dense"`` or ``"sparse"`` (``k`` picks)."""
    B = positive_int(batch_size, "batch_size")
    C, Cw, R, D = op.channels, op.weight_channels, op.num_ranges, op.num_candidates
    opts = dict(generator=generator, dtype=dtype)
    bias = torch.rand(B, C, R, **opts) * (1 - op.s_max)
    # A centred step's Lipschitz bound is twice Σ|w|: halve the weights to stay below s_max.
    s_max = op.s_max / 2 if op.centred else op.s_max
    if kind == "dense":
        u = torch.randn(B, Cw, R, D, **opts)
        # Random radius in (0, 1] so bounds are spread up to s_max, not all at it.
        u = u / u.abs().sum(-1, keepdim=True) * torch.rand(B, Cw, R, 1, **opts)
        code: Code = DenseCode.from_unconstrained(u, bias, s_max)
    elif kind == "sparse":
        k = positive_int(k, "k")
        index = torch.randint(0, D, (B, Cw, R, k), generator=generator)
        u = (2 * torch.rand(B, Cw, R, k, **opts) - 1) / k
        code = SparseCode.from_unconstrained(index, u, bias, s_max)
    else:
        raise ConfigurationError(f"kind must be 'dense' or 'sparse', got {kind!r}")
    return code.to(device) if device is not None else code
