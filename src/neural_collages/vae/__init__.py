"""Collage VAE: a hierarchical VAE whose decoder outputs a collage code (see ``docs/vae.md``).

``config`` (hyper-parameters), ``layers`` (residual and top-down blocks), ``heads`` (the collage
head — a dense code decoded by :class:`~neural_collages.core.CollageOperator` at any scale — and
the plain pixel head of the baseline), ``model`` (ELBO, importance-weighted bound, sampling,
encoding), ``files`` (weights and shipped models) and ``mnist`` (the digits, read from the
registry package's Zarr archive or from idx files).
"""

from .config import VAEConfig
from .model import HierarchicalVAE

__all__ = ["HierarchicalVAE", "VAEConfig"]
