"""The hierarchical VAE: bottom-up encoder, top-down latent groups, a collage or pixel head.

``x`` is a batch of binary digits ``(B, 1, 28, 28)`` in {0, 1}. The encoder computes features at
28, 14, 7 and 1 pixels; the top-down network starts from a learned state at 1×1 and runs its
latent groups at 1, 7 and 14 pixels (nearest upsampling between them), each drawing ``z`` from
the posterior (training, encoding) or the prior (sampling). Its 14×14 state goes to the head.

Bounds are in nats per digit: :meth:`HierarchicalVAE.elbo` (analytic KL per group) and
:meth:`HierarchicalVAE.iwae` (Burda et al. 2016, ``k`` importance samples; ``k = 1`` is a
one-sample ELBO). Everything random takes a ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import positive_int
from ..errors import ConfigurationError, ImageError
from .config import ENCODER_RESOLUTIONS, IMAGE_SIZE, TOPDOWN_RESOLUTIONS, VAEConfig
from .heads import CollageHead, PixelHead
from .layers import Block, TopDownBlock

PIXELS = IMAGE_SIZE * IMAGE_SIZE
#: Largest scale :meth:`HierarchicalVAE.sample` decodes (40× is 1120×1120 per digit).
MAX_SCALE = 64


def check_digits(x) -> torch.Tensor:
    """``x`` as float ``(B, 1, 28, 28)`` with values in [0, 1] (ImageError otherwise)."""
    if not isinstance(x, torch.Tensor):
        raise ImageError(f"digits must be a tensor, got {type(x).__name__}")
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE) or x.shape[0] < 1:
        raise ImageError(f"digits must have shape (B, 1, {IMAGE_SIZE}, {IMAGE_SIZE}), got {tuple(x.shape)}")
    x = x.float()
    if not torch.isfinite(x).all() or float(x.min()) < 0 or float(x.max()) > 1:
        raise ImageError("digit pixels must lie in [0, 1]")
    return x


class HierarchicalVAE(nn.Module):
    """A top-down hierarchical VAE whose likelihood head is a collage operator or plain pixels."""

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        config = config or VAEConfig()
        self.config = config
        W, M = config.width, config.bottleneck
        self.stem = nn.Conv2d(1, W, 3, padding=1)
        self.encoder = nn.ModuleList(
            nn.ModuleList(Block(W, M, W, res) for _ in range(n))
            for res, n in zip(ENCODER_RESOLUTIONS, config.encoder_blocks))
        depth_scale = math.sqrt(1.0 / sum(config.topdown_blocks))
        self.top = nn.Parameter(torch.zeros(1, W, 1, 1))
        self.resolution_bias = nn.ParameterList(
            nn.Parameter(torch.zeros(1, W, res, res)) for res in TOPDOWN_RESOLUTIONS)
        self.topdown = nn.ModuleList(
            nn.ModuleList(TopDownBlock(W, M, config.zdim, res, depth_scale) for _ in range(n))
            for res, n in zip(TOPDOWN_RESOLUTIONS, config.topdown_blocks))
        self.head = CollageHead(config) if config.decoder == "collage" else PixelHead(config)

    @property
    def resolution_independent(self) -> bool:
        return self.config.decoder == "collage"

    # ------------------------------------------------------------------ networks
    def activations(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Encoder features of binary digits, by resolution."""
        h = self.stem(2 * x - 1)
        acts = {}
        for res, blocks in zip(ENCODER_RESOLUTIONS, self.encoder):
            if h.shape[-1] != res:
                h = F.adaptive_avg_pool2d(h, res)
            for block in blocks:
                h = block(h)
            acts[res] = h
        return acts

    def run_topdown(self, acts: dict[int, torch.Tensor] | None, batch: int, generator=None,
                    temperature: float = 1.0, use_mean: bool = False) -> tuple[torch.Tensor, list[dict]]:
        """The 14×14 state and each latent group's stats (posterior if ``acts``, prior otherwise)."""
        h = self.top.expand(batch, -1, -1, -1)
        stats = []
        for res, bias, blocks in zip(TOPDOWN_RESOLUTIONS, self.resolution_bias, self.topdown):
            if h.shape[-1] != res:
                h = F.interpolate(h, size=(res, res), mode="nearest")
            h = h + bias
            for block in blocks:
                h, s = block(h, None if acts is None else acts[res], generator, temperature, use_mean)
                stats.append(s)
        return h, stats

    def _nll(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)

    # ------------------------------------------------------------------ bounds
    def forward(self, x: torch.Tensor, generator=None) -> dict[str, torch.Tensor]:
        """Per-digit ``nll`` and ``kl`` (nats) of one posterior sample, and the training ``loss``
        (the negative ELBO per pixel, averaged over the batch)."""
        x = check_digits(x)
        h, stats = self.run_topdown(self.activations(x), x.shape[0], generator)
        nll = self._nll(self.head(h), x)
        kl = torch.stack([s["kl"] for s in stats]).sum(0)
        return {"nll": nll, "kl": kl, "loss": ((nll + kl) / PIXELS).mean()}

    def elbo(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """The evidence lower bound ``log p(x) ≥ ELBO`` per digit, in nats (one posterior sample)."""
        out = self.forward(x, generator)
        return -(out["nll"] + out["kl"])

    def iwae(self, x: torch.Tensor, k: int = 100, generator=None, batch: int = 256) -> torch.Tensor:
        """The importance-weighted bound ``log p(x) ≥ L_k`` per digit, in nats (``batch`` samples per pass)."""
        x = check_digits(x)
        k = positive_int(k, "k")
        acts = self.activations(x)
        per = max(1, batch // k) if k <= batch else 1
        bounds = []
        for a in range(0, x.shape[0], per):
            xs = x[a : a + per]
            n = xs.shape[0]
            log_w = []
            for j in range(0, k, max(1, batch // n)):
                m = min(k - j, max(1, batch // n))
                rep = {res: v[a : a + per].repeat_interleave(m, 0) for res, v in acts.items()}
                h, stats = self.run_topdown(rep, n * m, generator)
                nll = self._nll(self.head(h), xs.repeat_interleave(m, 0))
                log_ratio = torch.stack([s["log_ratio"] for s in stats]).sum(0)
                log_w.append((-nll - log_ratio).reshape(n, m))
            log_w = torch.cat(log_w, dim=1)
            bounds.append(torch.logsumexp(log_w, dim=1) - math.log(k))
        return torch.cat(bounds)

    # ------------------------------------------------------------------ generation
    def _check_scale(self, scale) -> int:
        scale = positive_int(scale, "scale")
        if scale > MAX_SCALE:
            raise ConfigurationError(f"scale must be at most {MAX_SCALE}, got {scale}")
        if scale != 1 and not self.resolution_independent:
            raise ConfigurationError("the pixel decoder produces 28x28 digits only (scale 1); "
                                     "only a collage decoder samples at other scales")
        return scale

    def decode_state(self, h: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """Bernoulli means ``(B, 1, 28s, 28s)`` of a top-down state."""
        return torch.sigmoid(self.head(h, self._check_scale(scale)))

    def sample(self, n: int, scale: int = 1, temperature: float = 1.0, generator=None) -> torch.Tensor:
        """``n`` digits from the prior as Bernoulli means ``(n, 1, 28s, 28s)``.

        The latents depend on ``generator`` and ``temperature`` only, so one seed gives the same
        digits at every scale.
        """
        n = positive_int(n, "n")
        scale = self._check_scale(scale)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
                math.isfinite(temperature) and 0 <= temperature <= 2):
            raise ConfigurationError(f"temperature must lie in [0, 2], got {temperature!r}")
        h, _ = self.run_topdown(None, n, generator, float(temperature))
        return self.decode_state(h, scale)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Posterior means of every latent group, top first."""
        x = check_digits(x)
        _, stats = self.run_topdown(self.activations(x), x.shape[0], use_mean=True)
        return [s["z"] for s in stats]

    def reconstruct(self, x: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """Bernoulli means at ``scale`` of digits decoded from their posterior means."""
        x = check_digits(x)
        scale = self._check_scale(scale)
        h, _ = self.run_topdown(self.activations(x), x.shape[0], use_mean=True)
        return self.decode_state(h, scale)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


@torch.no_grad()
def mean_bounds(model: HierarchicalVAE, digits: torch.Tensor, k: int | None = None, generator=None,
                chunk: int = 100, progress: bool = False) -> dict:
    """Mean negative ELBO and, with ``k``, the importance-weighted NLL bound, in nats per digit.

    ``chunk`` digits at a time, drawing each chunk's ELBO noise then its ``k`` samples from
    ``generator`` (so a seed and a chunk size give the same numbers every run).
    """
    from tqdm import tqdm

    nelbo = nll = 0.0
    for a in tqdm(range(0, digits.shape[0], chunk), desc=f"bounds (k={k})", unit="chunk", disable=not progress,
                  leave=False):
        part = digits[a : a + chunk]
        nelbo += float(-model.elbo(part, generator).sum())
        if k is not None:
            nll += float(-model.iwae(part, k, generator).sum())
    n = digits.shape[0]
    result = {"elbo_nats": nelbo / n, "n": n}
    if k is not None:
        result.update(nll_nats=nll / n, bits_per_dim=nll / n / (PIXELS * math.log(2)), k=k)
    return result


def digit_grid(means: torch.Tensor) -> torch.Tensor:
    """Digits ``(n, 1, S, S)`` as one grey image ``(1, rows·S, cols·S)``, row-major, no padding.

    ``cols = ⌈√n⌉``; cells after the last digit stay black.
    """
    n, _, side, _ = means.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = means.new_zeros(rows * cols, side, side)
    grid[:n] = means[:, 0]
    return grid.reshape(rows, cols, side, side).permute(0, 2, 1, 3).reshape(1, rows * side, cols * side)
