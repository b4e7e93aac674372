"""Shared helpers of the VAE tests (a module, not a conftest: test basenames must stay unique)."""

import torch

from neural_collages.vae import HierarchicalVAE, VAEConfig

#: A network small enough for a test to build and run in milliseconds, with every kind of block.
TINY = dict(width=16, bottleneck=8, zdim=2, encoder_blocks=(1, 1, 1, 1), topdown_blocks=(1, 1, 1))


def tiny_vae(seed: int = 0, **overrides) -> HierarchicalVAE:
    torch.manual_seed(seed)
    return HierarchicalVAE(VAEConfig(**{**TINY, **overrides})).eval()


def random_digits(n: int = 16, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=g) > 0.8).float()
