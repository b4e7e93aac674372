"""Training the amortised IFS encoder (``ifs/encoder.py``) on attractors of random contractive IFS.

Every step draws a batch of random IFS (``N`` maps: random rotations, singular values in
``[0.1, 0.85]`` with one map up to ``0.9`` half of the time, offsets inside the unit box), samples
each attractor by the chaos game, normalises it to the unit box and asks the encoder for maps.
The loss is the collage loss of the prediction on the cloud it was given — the symmetric
Chamfer distance between ``X`` and ``∪ w_i(X)`` (exact, ``torch.cdist``, on a subsample) — so no
ground-truth maps are needed and the order of the maps does not matter. The weights are saved
(atomically) every ``save_every`` seconds and at the end; ``resume`` continues from the file.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch

from ..errors import ConfigurationError
from ..ifs.encoder import INPUT_POINTS, EncoderConfig, IFSEncoder, load_encoder, save_encoder
from ..ifs.fit import Normalisation
from ..ifs.model import linear_parts
from ..ifs.render import chaos_game

#: Points of each training cloud the loss compares with their collage.
LOSS_POINTS = 256


def random_maps(dim: int, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random contractive IFS ``(A (n, d, d), t (n, d))`` float64 (see the module docstring)."""
    k = dim * (dim - 1) // 2
    rot_u = (torch.rand(n, k, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    rot_v = (torch.rand(n, k, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    sv = 0.1 + 0.75 * torch.rand(n, dim, generator=g, dtype=torch.float64)
    if bool(torch.rand(1, generator=g) < 0.5):
        sv[0] = 0.65 + 0.25 * torch.rand(dim, generator=g, dtype=torch.float64)
    A = linear_parts(rot_u, rot_v, torch.atanh(sv), 1.0, dim)
    t = torch.rand(n, dim, generator=g, dtype=torch.float64)
    return A, t


def random_clouds(batch: int, dim: int, n: int, g: torch.Generator, points: int = INPUT_POINTS) -> torch.Tensor:
    """``(batch, points, dim)`` float32: attractors of random IFS, each normalised to the unit box."""
    clouds = []
    while len(clouds) < batch:
        A, t = random_maps(dim, n, g)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        x = chaos_game(A, t, None, points, walkers=min(points, 256), burn_in=24, seed=seed).double()
        extent = float((x.max(0).values - x.min(0).values).max())
        if not math.isfinite(extent) or extent < 1e-6:
            continue  # a degenerate attractor (a point): nothing to learn from
        clouds.append(Normalisation.of(x).to_unit(x).float())
    return torch.stack(clouds)


def collage_chamfer(A: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of Chamfer(``x``, ``∪ w_i(x)``), exact: ``A (B, N, d, d)``, ``x (B, m, d)``."""
    y = (torch.einsum("bnij,bmj->bnmi", A, x) + t[:, :, None, :]).reshape(x.shape[0], -1, x.shape[-1])
    dist = torch.cdist(x, y)  # (B, m, N·m)
    return 0.5 * (dist.min(2).values.mean() + dist.min(1).values.mean())


def train_encoder(out: Path, config: EncoderConfig, minutes: float, batch: int = 32, lr: float = 1e-3,
                  seed: int = 0, resume: bool = False, save_every: float = 60.0,
                  progress: Callable[[int, float], object] | None = None) -> dict:
    """Train (or with ``resume`` continue) an encoder for ``minutes``; returns what was measured."""
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise ConfigurationError(f"minutes must be a positive finite number, got {minutes!r}")
    if not (isinstance(lr, float) and math.isfinite(lr) and lr > 0):
        raise ConfigurationError(f"lr must be a positive finite number, got {lr!r}")
    if not isinstance(batch, int) or not 1 <= batch <= 4096:
        raise ConfigurationError(f"batch must be an integer in 1..4096, got {batch!r}")
    out = Path(out)
    info = {"steps": 0, "seconds": 0.0}
    if resume:
        encoder, info = load_encoder(out)
        if encoder.config != config:
            raise ConfigurationError(f"{out} holds an encoder for {encoder.config}, not {config}")
        encoder.train()
    else:
        torch.manual_seed(seed)
        encoder = IFSEncoder(config)
    g = torch.Generator().manual_seed(seed + int(info.get("steps", 0)))
    optimiser = torch.optim.Adam(encoder.parameters(), lr=lr)
    start = last_save = time.perf_counter()
    steps, recent = int(info.get("steps", 0)), []
    while time.perf_counter() - start < 60 * minutes:
        x = random_clouds(batch, config.dim, config.num_maps, g)
        A, t = encoder(x)
        sub = x[:, torch.randperm(x.shape[1], generator=g)[:LOSS_POINTS]]
        loss = collage_chamfer(A, t, sub)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        optimiser.step()
        steps += 1
        recent = (recent + [float(loss.detach())])[-200:]
        if progress is not None:
            progress(steps, recent[-1])
        if time.perf_counter() - last_save > save_every:
            _save(encoder, out, info, steps, start, recent)
            last_save = time.perf_counter()
    return _save(encoder, out, info, steps, start, recent)


def _save(encoder: IFSEncoder, out: Path, info: dict, steps: int, start: float, recent: list) -> dict:
    done = {"steps": steps, "seconds": float(info.get("seconds", 0.0)) + time.perf_counter() - start,
            "recent_loss": sum(recent) / max(1, len(recent))}
    save_encoder(encoder, out, done)
    return done
