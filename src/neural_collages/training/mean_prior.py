"""Refitting a trained model's range-mean entropy tables with row contexts (no encoder training)."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..coding.contexts import NUM_MEAN_CONTEXTS
from ..models.neural_collage import NeuralCollageCodec
from .sampler import CropSampler


def refit_mean_prior(model: NeuralCollageCodec, images, steps: int = 400, patch: int = 256, batch: int = 8,
                     seed: int = 0, lr: float = 1e-2) -> NeuralCollageCodec:
    """A copy of ``model`` with ``mean_context`` on, its mean tables fitted on ``images``.

    Range means are computed from the image, not by the network, so their entropy model can be
    (re)fitted alone: the encoder, patches and coefficient tables are kept; the mean prior starts
    from the old per-plane tables and minimises the mean residuals' bits on random patches.
    """
    config = replace(model.config, mean_context=True)
    new = NeuralCollageCodec(config)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("mean_prior.")}
    new.load_state_dict(state, strict=False)
    old = model.mean_prior
    per_plane = old.mix_logit.shape[0] // 3
    with torch.no_grad():
        for plane in range(3):
            for ctx in range(NUM_MEAN_CONTEXTS):
                src = plane * per_plane
                new.mean_prior.log_scales[plane * NUM_MEAN_CONTEXTS + ctx] = old.log_scales[src]
                new.mean_prior.mix_logit[plane * NUM_MEAN_CONTEXTS + ctx] = old.mix_logit[src]
    sampler = CropSampler(images, patch, seed=seed)
    opt = torch.optim.Adam(new.mean_prior.parameters(), lr=lr)
    for _ in range(steps):
        x = sampler.sample(batch)
        with torch.no_grad():
            _, luma, chroma = new.planes(x)
            grid_y, grid_c = new.mean_grids(luma, chroma)
        bits = new.mean_bits(grid_y + torch.rand_like(grid_y) - 0.5, grid_c + torch.rand_like(grid_c) - 0.5, noisy=True)
        loss = bits.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return new.eval()
