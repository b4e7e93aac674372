"""Fractalizing an image: fit a collage whose only domain is the whole image.

Two stages:

1. **Closed form.** For every range cell, the least-squares affine fit of the cell on the whole
   image pooled to the cell's size under each isometry (plus auxiliary patches, if any): one
   small linear system per range, solved in a batch; the domain weights are then projected
   (Euclidean projection onto the L1 ball) to ``Σ|w| ≤ s_max`` and the offsets refitted.
2. **Fine-tuning.** Adam on the fixed point's reconstruction error. The code is parametrised
   as ``contractive_weights(u)``, so it stays contractive; each step warm-starts from the last
   fixed point (no gradient) and back-propagates through a few unrolled collage steps, which
   approximates the gradient through the fixed point at a fraction of a full unroll.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..checks import is_int
from ..codecs.fractal_art import ArtCode, ArtConfig
from ..core.codes import DenseCode, contractive_weights
from ..core.partitions import isometry_index
from ..errors import ConfigurationError
from ..imaging.tensors import pad_to_multiple

#: Fine-tuning steps by default: measured to take a 512×512 RGB image well under 10 s here.
DEFAULT_STEPS = 60


@dataclass(frozen=True)
class FractalizeOptions:
    """How to fractalize: the collage's geometry and the fitting budget."""

    range_size: int = 8
    isometries: tuple = tuple(range(8))
    s_max: float = 0.9
    aux: int = 0
    channel_maps: str = "per_channel"
    steps: int = DEFAULT_STEPS
    lr: float = 0.02
    unroll: int = 3
    warm_steps: int = 6
    seed: int = 0

    def __post_init__(self):
        for name, low in (("steps", 0), ("unroll", 1), ("warm_steps", 0), ("seed", 0)):
            value = getattr(self, name)
            if not is_int(value) or value < low:
                raise ConfigurationError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.steps > 10_000:
            raise ConfigurationError(f"steps must be at most 10000, got {self.steps}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigurationError(f"lr must be a positive finite number, got {self.lr!r}")


@dataclass
class FitReport:
    """What fitting did: losses before and after fine-tuning, and the time it took."""

    collage_loss_closed_form: float  # mean squared ‖x − F(x)‖ per pixel, image in [0, 1]
    collage_loss: float
    mse_closed_form: float  # mean squared error of the fixed point (after float16 quantisation at the end)
    mse: float
    seconds: float

    @property
    def psnr(self) -> float:
        return 10 * math.log10(1 / max(self.mse, 1e-12))


def project_l1_ball(w: torch.Tensor, radius: float) -> torch.Tensor:
    """Euclidean projection of every row (last dim) onto ``{v : Σ|v| ≤ radius}`` (Duchi et al. 2008)."""
    a = w.abs()
    inside = a.sum(-1, keepdim=True) <= radius
    u, _ = torch.sort(a, dim=-1, descending=True)
    css = u.cumsum(-1) - radius
    k = torch.arange(1, w.shape[-1] + 1, dtype=w.dtype, device=w.device)
    cond = u - css / k > 0
    rho = cond.to(w.dtype).cumsum(-1).argmax(-1, keepdim=True)  # last index where cond holds
    theta = css.gather(-1, rho) / (rho + 1).to(w.dtype)
    projected = torch.sign(w) * (a - theta).clamp(min=0)
    return torch.where(inside, w, projected)


def _closed_form(op, x: torch.Tensor, s_max: float) -> DenseCode:
    """Per-range least squares on the pooled candidates, domain weights projected to the L1 ball."""
    cands = op.candidates(x).detach()  # (1, C, D, P)
    ranges = op.ranges(x).detach()  # (1, C, R, P)
    C, D, P = cands.shape[1:]
    R = ranges.shape[2]
    n_dom = D - op.num_aux
    if op.channel_maps == "shared":  # one weight set for all channels: stack the channels' pixels
        cands_g = cands.permute(0, 2, 1, 3).reshape(1, 1, D, C * P)
        ranges_g = ranges.permute(0, 2, 1, 3).reshape(1, 1, R, C * P)
        cm, rm = cands.mean(-1), ranges.mean(-1)  # per channel means (1, C, D) and (1, C, R)
        cc = (cands - cm.unsqueeze(-1)).permute(0, 2, 1, 3).reshape(1, 1, D, C * P)
        rc = (ranges - rm.unsqueeze(-1)).permute(0, 2, 1, 3).reshape(1, 1, R, C * P)
        del cands_g, ranges_g
    else:
        cm, rm = cands.mean(-1), ranges.mean(-1)
        cc, rc = cands - cm.unsqueeze(-1), ranges - rm.unsqueeze(-1)
    gram = cc @ cc.transpose(-1, -2)  # (1, Cw, D, D): the same for every range (one domain)
    ridge = 1e-6 * gram.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True).clamp(min=1e-12)
    gram = gram + ridge.unsqueeze(-1) * torch.eye(D, dtype=x.dtype)
    rhs = rc @ cc.transpose(-1, -2)  # (1, Cw, R, D)
    w = torch.linalg.solve(gram.unsqueeze(2), rhs.unsqueeze(-1)).squeeze(-1)  # (1, Cw, R, D)
    w = torch.cat([project_l1_ball(w[..., :n_dom], s_max), w[..., n_dom:]], dim=-1)
    # Offsets refitted for the projected weights: b = mean(range) − Σ w · mean(candidate), per channel.
    bias = rm - torch.einsum("bwrd,bcd->bcr", w, cm) if op.channel_maps == "shared" else rm - (
        w * cm.unsqueeze(2)).sum(-1)
    return DenseCode(w, bias)


def fractalize(
    image: torch.Tensor, options: FractalizeOptions | None = None, progress: Callable[[int], object] | None = None
) -> tuple[ArtCode, FitReport]:
    """Fit a fractal-art code to a float image ``(C, H, W)`` in ``[0, 1]`` (C = 1 or 3).

    ``progress`` is called with 1 after every fine-tuning step. Returns the code (already
    quantised to float16, exactly what a file holds) and a :class:`FitReport`.
    """
    options = options or FractalizeOptions()
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ConfigurationError("fractalize takes a float image of shape (1 or 3, H, W)")
    if not image.is_floating_point() or not bool(torch.isfinite(image).all()):
        raise ConfigurationError("fractalize takes a finite float image with values in [0, 1]")
    C, H, W = image.shape
    r = options.range_size
    if not is_int(r) or not 2 <= r <= 64:
        raise ConfigurationError(f"range size must be an integer in [2, 64], got {r!r}")
    if min(H, W) < 2 * r:
        raise ConfigurationError(f"the image ({W}x{H}) must be at least two range cells ({2 * r} px) on each side")
    isos = tuple(isometry_index(i) for i in options.isometries)
    start = time.perf_counter()
    torch.manual_seed(options.seed)
    x, _ = pad_to_multiple(image.clamp(0, 1).float().unsqueeze(0), r, mode="reflect")
    config = ArtConfig((x.shape[2], x.shape[3]), r, isos, float(options.s_max), options.aux, options.channel_maps)
    op = config.operator(C)
    if options.aux:  # start auxiliary patches at low-frequency content of the image itself
        with torch.no_grad():
            op.aux_patches.copy_(torch.rand_like(op.aux_patches) * 0.1 + 0.45)
    code = _closed_form(op, x, config.s_max)
    aux = op.aux_patches.detach().clone() if options.aux else None
    art = ArtCode(config, (H, W), C, code, aux)
    with torch.no_grad():
        closed_collage = float(op.collage_loss(x, code))
    closed_mse = _fixed_point_mse(art.quantised(), x)

    n_dom = op.num_candidates - op.num_aux
    u_dom = (code.weights[..., :n_dom] / config.s_max).clone().requires_grad_(True)
    w_aux = code.weights[..., n_dom:].clone().requires_grad_(True)
    bias = code.bias.clone().requires_grad_(True)
    params = [u_dom, w_aux, bias] + ([op.aux_patches] if options.aux else [])
    optimiser = torch.optim.Adam(params, lr=options.lr)
    z = None
    for _ in range(options.steps):
        current = DenseCode(torch.cat([contractive_weights(u_dom, config.s_max), w_aux], -1), bias)
        with torch.no_grad():  # warm start: the previous fixed point, a few more steps without gradient
            z, _ = op.decode(current.detach(), init=z, tol=0, max_steps=options.warm_steps if z is not None else 20)
        out = z
        for _ in range(options.unroll):
            out = op.step(out, current)
        loss = (out - x).pow(2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        z = out.detach()
        if progress is not None:
            progress(1)
    final = DenseCode(torch.cat([contractive_weights(u_dom, config.s_max), w_aux], -1), bias).detach()
    art = ArtCode(config, (H, W), C, final, op.aux_patches.detach().clone() if options.aux else None).quantised()
    decode_steps = _decode_steps(art)
    art = ArtCode(ArtConfig(config.padded, r, isos, config.s_max, options.aux, options.channel_maps, decode_steps),
                  art.size, C, art.code, art.aux)
    with torch.no_grad():
        collage = float(art.operator().collage_loss(x, art.code))
    report = FitReport(closed_collage, collage, closed_mse, _fixed_point_mse(art, x), time.perf_counter() - start)
    return art, report


def _decode_steps(art: ArtCode, tol: float = 1 / 1024) -> int:
    """Steps for a decode from zeros to settle within ``tol`` (measured on this code, at least 8)."""
    with torch.no_grad():
        _, stats = art.operator().decode(art.code, tol=tol, max_steps=256)
    return int(min(256, max(8, stats.steps + 2)))


def _fixed_point_mse(art: ArtCode, x: torch.Tensor) -> float:
    with torch.no_grad():
        z, _ = art.operator().decode(art.code, tol=1e-5, max_steps=256)
    H, W = art.size
    return float((z[..., :H, :W] - x[..., :H, :W]).pow(2).mean())
