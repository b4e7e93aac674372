"""The Neural Collage codec model: an encoder network that outputs collage codes in one pass.

An image (RGB in ``[0, 1]``, sides multiples of ``crop``) is converted to full-range YCbCr;
luma is coded at full resolution and chroma at half resolution (4:2:0: chroma is smooth, and
at full resolution it took a third of the bits in a measured prototype). The image is cut into
``crop × crop`` crops, each coded independently by two centred :class:`CollageOperator` s:

* luma: ``crop × crop``, 8×8 range cells; domains of 2× the range size on a lattice of step 8
  (the local 2:1 self-similarity that makes fractal coding work) plus the whole crop, each
  under the 8 isometries; plus ``63`` auxiliary patches learned across the dataset,
  initialised to the 8×8 DCT's AC basis.
* chroma (Cb, Cr, per-channel maps): ``crop/2 × crop/2``, 8×8 ranges, the whole plane as
  the domain under the 8 isometries, plus 63 learned auxiliary patches shared by Cb and Cr.

Centred maps make every range's bias its mean, so the means are not predicted by the network:
they are computed from the image, quantised with ``mean_step`` (8-bit units) and coded as
DPCM residuals (median-edge predictor over the image-wide grid of range cells). The encoder
(a patch-embedding convolution per range cell and residual 3×3 convolutions over the crop's
grid of ranges) outputs the dense weights in integer units: auxiliary weights directly,
domain weights in steps of ``s_max / domain_steps`` with their L1 norm per range capped at
``s_max`` (the classic fractal coder's ``|s| < 1``; auxiliary patches are constants and do not
enter any contraction bound). With centred maps the guaranteed sup-norm bound is ``2·s_max``,
so, as for the PIFS codec, decoding runs to a tolerance with a step cap; measured decodes
converge in a handful of steps.

Training simulates quantisation (straight-through rounding for the distortion, additive uniform
noise for the rate) and learns a factorized discrete prior: one probability table per
coefficient type (candidate and plane) and one per plane for the mean residuals. The tables are
exported as integer counts, so the coder's models derive from integers only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..colour import downsample_2x, rgb_to_ycbcr, upsample_2x, ycbcr_to_rgb
from ..errors import ConfigurationError
from ..codes import DenseCode, contractive_weights
from ..operator import CollageOperator

RANGE = 8
PROB_FLOOR = 2.0**-16  # the smallest probability an exported integer table can hold
#: Context classes of a range: ``v = 2·n(above) + n(above-left) + n(above-right)`` with ``n`` the
#: number of nonzero coefficients of those ranges (same plane), bucketed at these bounds.
CONTEXT_BOUNDS = (0, 2, 6, 14)
NUM_CONTEXTS = len(CONTEXT_BOUNDS) + 1
#: Context classes of a range mean's DPCM residual: ``|above − above-left| + |above-right − above|``
#: (mean indices of the decoded row above; edges replicated), bucketed at these bounds.
MEAN_CONTEXT_BOUNDS = (0, 2, 6, 14)
NUM_MEAN_CONTEXTS = len(MEAN_CONTEXT_BOUNDS) + 1


def mean_context_grid(grid: torch.Tensor) -> torch.Tensor:
    """Context class of every range mean from the row above: ``(..., rows, cols)`` indices → classes.

    Row 0 is class 0. Uses rounded values (noisy training grids give the classes of their integers).
    """
    g = torch.round(grid).long()
    padded = F.pad(g.unsqueeze(0) if g.dim() == 2 else g, (1, 1, 0, 0), mode="replicate")
    padded = padded.squeeze(0) if g.dim() == 2 else padded
    act = (padded[..., :-1, 1:-1] - padded[..., :-1, :-2]).abs() + (padded[..., :-1, 2:] - padded[..., :-1, 1:-1]).abs()
    ctx = torch.bucketize(act, torch.tensor(MEAN_CONTEXT_BOUNDS, device=g.device), right=True)
    return F.pad(ctx, (0, 0, 1, 0))  # row 0: class 0


def context_grid(nonzero: torch.Tensor) -> torch.Tensor:
    """Context class of every range from the row above: ``(..., rows, cols)`` counts → classes.

    Depends only on the previous row, so a decoder can decode a whole row of ranges at once.
    """
    nz = nonzero.long()
    padded = F.pad(nz, (1, 1, 1, 0))  # a zero row above, zero columns left and right
    above = padded[..., :-1, 1:-1]
    v = 2 * above + padded[..., :-1, :-2] + padded[..., :-1, 2:]
    return torch.bucketize(v, torch.tensor(CONTEXT_BOUNDS, device=v.device))


def dct_ac_basis(n: int = 8, count: int | None = None) -> torch.Tensor:
    """The first ``count`` (default all ``n² − 1``) AC atoms of the orthonormal 2-D DCT-II, ``(count, 1, n, n)``.

    Ordered by frequency ``u + v`` (then ``u``), so a prefix is the lowest-frequency atoms.
    """
    k = torch.arange(n, dtype=torch.float64)
    basis = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))  # (freq, pos)
    basis[0] *= math.sqrt(1.0 / n)
    basis[1:] *= math.sqrt(2.0 / n)
    atoms = torch.einsum("ui,vj->uvij", basis, basis).reshape(n * n, 1, n, n)
    order = sorted(range(1, n * n), key=lambda i: (i // n + i % n, i // n))
    return atoms[order[: (n * n - 1) if count is None else count]].float()


@dataclass(frozen=True)
class NeuralCodecConfig:
    """Hyper-parameters of a Neural Collage codec model (stored with its weights)."""

    crop: int = 32
    width: int = 128
    blocks: int = 2
    coef_bound: int = 63  # coefficients are integers in [-coef_bound, coef_bound]
    aux_count: int = 63  # learned auxiliary patches per plane kind (initialised to the lowest DCT atoms)
    mean_step: float = 2.0  # quantisation step of range means, 8-bit units
    aux_amplitude: float = 0.04  # initial amplitude of the DCT-initialised auxiliary patches
    s_max: float = 0.95  # L1 radius of every range's domain weights (the classic |s| < 1)
    domain_steps: int = 8  # quantisation steps of a domain weight per unit of s_max
    train_decode_steps: int = 8
    # Give the encoder, per range, the exact best domain of its crop (closed-form least squares
    # over the crop's few domain candidates, clamped to s_max): its scale is added to that
    # candidate's output and its fit enters the heads. Without it the domain weights never leave
    # zero in training (the learned prior collapses them first; measured).
    search_hint: bool = False
    # Condition each range's coefficient tables on the nonzero counts of the ranges above it
    # (NUM_CONTEXTS table sets): measured on shipped codes, 10% fewer luma coefficient bits.
    context: bool = False
    # Condition the mean residuals' tables on the activity of the decoded row above
    # (NUM_MEAN_CONTEXTS classes per plane): measured on Kodak, 8.6 % fewer mean bits.
    mean_context: bool = False
    # Rounding dead zone the encoder uses (``quantise``); a per-model choice made after training:
    # photo models 0.2 (BD-rate −5.3 % vs nearest on six Kodak images, benchmarks/neural_deadzone.py),
    # aerial models 0
    # (on held-out forest tiles any dead zone lost: textures need their small coefficients).
    encoder_deadzone: float = 0.0
    # Chroma at half resolution (4:2:0) or full resolution (4:4:4); measured in docs/neural.md.
    chroma_subsampling: bool = True
    lam: float = 0.004  # rate-distortion trade-off the model was trained for: bpp + lam * MSE(8-bit)

    def __post_init__(self):
        if self.crop < 2 * RANGE or self.crop % (2 * RANGE):
            raise ConfigurationError(f"crop must be a positive multiple of {2 * RANGE}, got {self.crop}")
        if not 1 <= self.coef_bound <= 1000:
            raise ConfigurationError(f"coef_bound must lie in [1, 1000], got {self.coef_bound}")
        if not 0.25 <= self.mean_step <= 64:
            raise ConfigurationError(f"mean_step must lie in [0.25, 64], got {self.mean_step}")
        if not 0 < self.s_max < 1:
            raise ConfigurationError(f"s_max must lie in (0, 1), got {self.s_max}")
        if not 0.0 <= self.encoder_deadzone < 0.5:
            raise ConfigurationError(f"encoder_deadzone must lie in [0, 0.5), got {self.encoder_deadzone}")
        if not 0 <= self.aux_count <= RANGE * RANGE - 1:
            raise ConfigurationError(f"aux_count must lie in [0, {RANGE * RANGE - 1}], got {self.aux_count}")
        if not 1 <= self.domain_steps <= 64:
            raise ConfigurationError(f"domain_steps must lie in [1, 64], got {self.domain_steps}")
        if self.width < 1 or self.blocks < 0 or self.train_decode_steps < 1:
            raise ConfigurationError("width, blocks and train_decode_steps must be positive")

    @property
    def mean_levels(self) -> int:
        """Largest mean index: means are ``index · mean_step`` in ``[0, 255]``."""
        return int(round(255.0 / self.mean_step))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NeuralCodecConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigurationError(f"unknown codec config keys: {sorted(unknown)}")
        return cls(**data)

    @property
    def domain_unit(self) -> float:
        """The weight of one integer step of a domain coefficient."""
        return self.s_max / self.domain_steps


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


class _ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


class CropEncoder(nn.Module):
    """Crop ``(N, 3, c, c)`` YCbCr → luma weights ``(N, 1, R, Dy)`` and chroma weights ``(N, 2, Rc, Dc)``."""

    def __init__(self, width: int, blocks: int, luma_candidates: int, chroma_candidates: int, hint_channels: int = 0,
                 chroma_factor: int = 2):
        super().__init__()
        self.embed = nn.Conv2d(3, width, RANGE, stride=RANGE)  # one feature vector per luma range
        self.blocks = nn.Sequential(*[_ResBlock(width) for _ in range(blocks)])
        self.hint_channels = hint_channels
        self.luma_head = nn.Conv2d(width + hint_channels, luma_candidates, 1)
        # A chroma range (8×8 at half resolution) covers 2×2 luma ranges: space-to-depth.
        self.chroma_factor = chroma_factor
        self.chroma_head = nn.Conv2d(chroma_factor**2 * width + 2 * hint_channels, 2 * chroma_candidates, 1)
        self.chroma_candidates = chroma_candidates
        for head in (self.luma_head, self.chroma_head):
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)

    def forward(self, crops: torch.Tensor, luma_hint=None, chroma_hint=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``luma_hint`` ``(N, k, r, r)`` / ``chroma_hint`` ``(N, 2k, r/2, r/2)``: per-range search features."""
        h = self.blocks(self.embed(crops - 0.5))
        g = F.gelu(h)
        luma = self.luma_head(g if luma_hint is None else torch.cat([g, luma_hint], 1))  # (N, Dy, r, r)
        N, Dy = luma.shape[:2]
        luma = luma.flatten(2).transpose(1, 2).reshape(N, 1, -1, Dy)
        gc = F.pixel_unshuffle(g, self.chroma_factor) if self.chroma_factor > 1 else g
        chroma = self.chroma_head(gc if chroma_hint is None else torch.cat([gc, chroma_hint], 1))  # (N, 2·Dc, r/2, r/2)
        chroma = chroma.reshape(N, 2, self.chroma_candidates, -1).transpose(2, 3)
        return luma, chroma


def to_crops(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B · H/size · W/size, C, size, size)``, row-major per image."""
    B, C, H, W = x.shape
    r, c = H // size, W // size
    return x.reshape(B, C, r, size, c, size).permute(0, 2, 4, 1, 3, 5).reshape(B * r * c, C, size, size)


def from_crops(crops: torch.Tensor, batch: int, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`to_crops` for ``batch`` images of ``grid = (rows, cols)`` crops."""
    N, C, h, w = crops.shape
    r, c = grid
    return crops.reshape(batch, r, c, C, h, w).permute(0, 3, 1, 4, 2, 5).reshape(batch, C, r * h, c * w)


def med_predict(grid: torch.Tensor, first: float) -> torch.Tensor:
    """Median-edge (LOCO-I) prediction of every cell of ``(..., h, w)`` from its causal neighbours.

    First cell: ``first``; first row: the left cell; first column: the cell above; elsewhere
    ``median(left, top, left + top − top-left)``. Works on floats (training) and integers alike.
    """
    left = F.pad(grid, (1, 0))[..., :, :-1]
    top = F.pad(grid, (0, 0, 1, 0))[..., :-1, :]
    top_left = F.pad(grid, (1, 0, 1, 0))[..., :-1, :-1]
    lo, hi = torch.minimum(left, top), torch.maximum(left, top)
    med = torch.where(top_left >= hi, lo, torch.where(top_left <= lo, hi, left + top - top_left))
    med = med.clone()
    med[..., 0, :] = left[..., 0, :]
    med[..., :, 0] = top[..., :, 0]
    med[..., 0, 0] = first
    return med


class NeuralCollageCodec(nn.Module):
    """Encoder, collage operators (with their learned auxiliary patches) and entropy model."""

    def __init__(self, config: NeuralCodecConfig | None = None):
        super().__init__()
        self.config = config = config or NeuralCodecConfig()
        c = config.crop
        aux = dct_ac_basis(RANGE, config.aux_count) * config.aux_amplitude
        self.luma_op = CollageOperator(
            (c, c), channels=1, range_size=RANGE, domain_size=[2 * RANGE, c], domain_stride=[RANGE, c],
            isometries=range(8), aux_patches=nn.Parameter(aux.clone()), centred=True, s_max=config.s_max,
        )
        cf = self.chroma_factor = 2 if config.chroma_subsampling else 1
        self.chroma_op = CollageOperator(
            (c // cf, c // cf), channels=2, range_size=RANGE, domain_size=c // cf, isometries=range(8),
            aux_patches=nn.Parameter(aux.clone()), centred=True, s_max=config.s_max,
        )
        self.encoder = CropEncoder(config.width, config.blocks, self.luma_op.num_candidates,
                                   self.chroma_op.num_candidates, hint_channels=2 if config.search_hint else 0,
                                   chroma_factor=cf)
        if config.search_hint:
            self.hint_gain = nn.Parameter(torch.ones(2))
        Dy, Dc = self.luma_op.num_candidates, self.chroma_op.num_candidates
        self.num_types = Dy + 2 * Dc
        self.coef_prior = FactorizedPrior(self.num_types * (NUM_CONTEXTS if config.context else 1), config.coef_bound)
        self.mean_prior = FactorizedPrior(3 * (NUM_MEAN_CONTEXTS if config.mean_context else 1), config.mean_levels,
                                          init_scale=4.0)
        # Unit of one integer step of each candidate's weight: s_max / domain_steps for domains,
        # 1 for auxiliary patches (their amplitude is learned in the patches themselves).
        self.register_buffer("luma_units", self._units(self.luma_op, config.domain_unit), persistent=False)
        self.register_buffer("chroma_units", self._units(self.chroma_op, config.domain_unit), persistent=False)
        self.register_buffer("luma_tables", torch.arange(Dy), persistent=False)
        self.register_buffer("chroma_tables", Dy + torch.arange(2 * Dc).reshape(1, 2, 1, Dc), persistent=False)

    @staticmethod
    def _units(op: CollageOperator, domain_unit: float) -> torch.Tensor:
        n_dom = op.num_candidates - op.num_aux
        return torch.cat([torch.full((n_dom,), domain_unit), torch.ones(op.num_aux)])

    def _code(self, op: CollageOperator, weights: torch.Tensor, bias: torch.Tensor) -> DenseCode:
        # Domain weights: L1 norm ≤ s_max per range (radial projection; exact for stored codes,
        # whose integers are already inside the ball unless a file was crafted). Aux weights free.
        n_dom = op.num_candidates - op.num_aux
        s_max = self.config.s_max
        dom = contractive_weights(weights[..., :n_dom] / s_max, s_max)
        return DenseCode(torch.cat([dom, weights[..., n_dom:]], -1), bias)

    # ------------------------------------------------------------------ pieces
    def planes(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """RGB ``(B, 3, H, W)`` in [0, 1] → YCbCr in [0, 1], luma ``(B, 1, H, W)``, chroma ``(B, 2, H/2, W/2)``."""
        ycc = rgb_to_ycbcr(rgb * 255.0) * (1 / 255.0)
        return ycc, ycc[:, :1], downsample_2x(ycc[:, 1:]) if self.chroma_factor == 2 else ycc[:, 1:]

    def encode_weights(self, ycc: torch.Tensor, luma: torch.Tensor | None = None,
                       chroma: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Unquantised weights in integer units: luma ``(N, 1, R, Dy)``, chroma ``(N, 2, Rc, Dc)``.

        ``luma`` and ``chroma`` are the planes (from :meth:`planes`; needed with ``search_hint``).
        """
        c = self.config.crop
        crops = to_crops(ycc, c)
        if not self.config.search_hint:
            return self.encoder(crops)
        if luma is None or chroma is None:
            raise ConfigurationError("a search-hint model needs the luma and chroma planes")
        hint_y, feat_y = self._search_hint(self.luma_op, to_crops(luma, c))
        cf = self.chroma_factor
        hint_c, feat_c = self._search_hint(self.chroma_op, to_crops(chroma, c // cf))
        N, r = crops.shape[0], c // RANGE
        feat_y = feat_y.reshape(N, r, r, 2).permute(0, 3, 1, 2)
        feat_c = feat_c.reshape(N, 2, r // cf, r // cf, 2).permute(0, 1, 4, 2, 3).reshape(N, 4, r // cf, r // cf)
        w_y, w_c = self.encoder(crops, feat_y, feat_c)
        n_y = hint_y.shape[-1]
        n_c = hint_c.shape[-1]
        w_y = torch.cat([w_y[..., :n_y] + self.hint_gain[0] * hint_y, w_y[..., n_y:]], -1)
        w_c = torch.cat([w_c[..., :n_c] + self.hint_gain[1] * hint_c, w_c[..., n_c:]], -1)
        return w_y, w_c

    def _search_hint(self, op: CollageOperator, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Best single domain per range by exact least squares: (scale in integer units on that
        candidate, zeros elsewhere) ``(N, C, R, Dd)`` and features ``(N, C, R, 2)``
        (fraction of the range's variance explained, the clamped scale)."""
        with torch.no_grad():
            n_dom = op.num_candidates - op.num_aux
            cand = op.candidates(crops)[:, :, :n_dom]  # centred (N, C, Dd, P)
            rng = op.ranges(crops)
            rng = rng - rng.mean(-1, keepdim=True)
            dot = rng @ cand.transpose(-1, -2)  # (N, C, R, Dd)
            norm = cand.pow(2).sum(-1).unsqueeze(-2).clamp_min(1e-10)
            s_max = self.config.s_max
            scale = (dot / norm).clamp(-s_max, s_max)
            gain = 2 * scale * dot - scale * scale * norm
            best = gain.argmax(-1, keepdim=True)
            s_best = scale.gather(-1, best)
            hint = torch.zeros_like(scale).scatter(-1, best, s_best / self.config.domain_unit)
            energy = rng.pow(2).sum(-1, keepdim=True).clamp_min(1e-10)
            feats = torch.cat([gain.gather(-1, best) / energy, s_best / s_max], -1)
        return hint, feats

    def mean_grids(self, luma: torch.Tensor, chroma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Range means in mean-step units (real): ``(B, 1, H/8, W/8)`` and ``(B, 2, H/16, W/16)``."""
        unit = 255.0 / self.config.mean_step
        return F.avg_pool2d(luma, RANGE) * unit, F.avg_pool2d(chroma, RANGE) * unit

    def mean_bits(self, grid_y: torch.Tensor, grid_c: torch.Tensor, noisy: bool) -> torch.Tensor:
        """Bits of the DPCM-coded mean indices (rounded, or noisy for training), per image."""
        first = float(self.config.mean_levels // 2)
        total = 0
        for plane, table in ((grid_y[:, :1], 0), (grid_c[:, :1], 1), (grid_c[:, 1:], 2)):
            residual = plane - med_predict(plane, first)
            if self.config.mean_context:
                idx = table * NUM_MEAN_CONTEXTS + mean_context_grid(plane.detach())
            else:
                idx = torch.full_like(residual, table, dtype=torch.long)
            if noisy:
                total = total + self.mean_prior.bits(residual, idx).flatten(1).sum(1)
            else:
                total = total + self.mean_prior.integer_bits(residual.long(), idx).flatten(1).sum(1)
        return total

    def coefficient_tables(self, q_y: torch.Tensor, q_c: torch.Tensor, batch: int, grid: tuple[int, int]):
        """Prior table of every coefficient of integer codes ``q_y`` ``(N, 1, R, Dy)``, ``q_c`` ``(N, 2, Rc, Dc)``."""
        if not self.config.context:
            return self.luma_tables, self.chroma_tables
        r = self.config.crop // RANGE
        N = q_y.shape[0]
        nz_y = (q_y != 0).sum(-1).reshape(N, 1, r, r)
        rc = r // self.chroma_factor
        nz_c = (q_c != 0).sum(-1).reshape(N, 2, rc, rc)
        ctx_y = to_crops(context_grid(from_crops(nz_y, batch, grid)), r).reshape(N, 1, -1, 1)
        ctx_c = to_crops(context_grid(from_crops(nz_c, batch, grid)), rc).reshape(N, 2, -1, 1)
        return ctx_y * self.num_types + self.luma_tables, ctx_c * self.num_types + self.chroma_tables

    def quantise(self, weights: torch.Tensor, deadzone: float = 0.0) -> torch.Tensor:
        """Round to the coded integers (clamped to the tables' support).

        ``deadzone`` > 0 rounds magnitudes down unless their fraction exceeds ``0.5 + deadzone``
        (the encoder uses it: zeros are the cheapest symbols; training rounds to nearest).
        """
        b = self.config.coef_bound
        if deadzone:
            return torch.clamp(torch.sign(weights) * torch.floor(weights.abs() + (0.5 - deadzone)), -b, b)
        return torch.clamp(torch.round(weights), -b, b)

    def codes(self, q_luma, q_chroma, mean_y, mean_c):
        """Dense codes of the crops from (dequantised) integer weights and mean indices."""
        c = self.config.crop
        scale = self.config.mean_step / 255.0
        bias_y = to_crops(mean_y * scale, c // RANGE).flatten(2)  # (N, 1, R)
        bias_c = to_crops(mean_c * scale, c // (self.chroma_factor * RANGE)).flatten(2)  # (N, 2, Rc)
        code_y = self._code(self.luma_op, q_luma * self.luma_units, bias_y)
        code_c = self._code(self.chroma_op, q_chroma * self.chroma_units, bias_c)
        return code_y, code_c

    def synthesize(self, code_y, code_c, batch: int, grid: tuple[int, int], scale: int = 1,
                   steps: int | None = None, tol: float = 1e-5, max_steps: int = 60, trajectory: bool = False):
        """Decode the crops' codes to fixed points and assemble RGB ``(B, 3, sH, sW)`` in [0, 1].

        ``steps`` runs exactly that many unrolled iterations (training); otherwise iterate until
        the update is ≤ ``tol``. Iterations start from the image of range means, so only the
        detail has to converge. With ``trajectory`` returns ``(image, frames)``, the RGB images
        after 0, 1, … steps.
        """
        paths = []
        for op, code in ((self.luma_op, code_y), (self.chroma_op, code_c)):
            P = (scale * RANGE) ** 2
            init = op.assemble(code.bias.unsqueeze(-1).expand(-1, -1, -1, P), scale)
            if steps is not None:
                z, stats = op.decode(code, scale, init=init, tol=0, max_steps=steps, return_trajectory=trajectory,
                                     check_contraction=False)
            else:
                z, stats = op.decode(code, scale, init=init, tol=tol, max_steps=max_steps,
                                     return_trajectory=trajectory, check_contraction=False)
            paths.append(stats.trajectory if trajectory else [z])
        n = max(len(p) for p in paths)
        frames = []
        for i in range(n):
            luma, chroma = (from_crops(p[min(i, len(p) - 1)], batch, grid) for p in paths)
            ycc = torch.cat([luma, upsample_2x(chroma) if self.chroma_factor == 2 else chroma], 1)
            frames.append(ycbcr_to_rgb(ycc * 255.0) * (1 / 255.0))
        return (frames[-1], frames) if trajectory else frames[-1]

    # ------------------------------------------------------------------ training
    def forward(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass on ``(B, 3, H, W)`` RGB in [0, 1] (sides multiples of ``crop``).

        Returns ``bpp`` (noisy-rate estimate, bits / (H·W)) and ``mse`` (8-bit scale) of the
        decoded images, plus parts for logging.
        """
        B, _, H, W = rgb.shape
        c = self.config.crop
        if H % c or W % c:
            raise ConfigurationError(f"training images must be multiples of the crop ({c}), got {H}x{W}")
        ycc, luma, chroma = self.planes(rgb)
        w_y, w_c = self.encode_weights(ycc, luma, chroma)
        b = self.config.coef_bound
        # Rate: additive uniform noise; distortion: straight-through rounding.
        noisy_y = torch.clamp(w_y + torch.rand_like(w_y) - 0.5, -b, b)
        noisy_c = torch.clamp(w_c + torch.rand_like(w_c) - 0.5, -b, b)
        tables_y, tables_c = self.coefficient_tables(self.quantise(w_y).detach(), self.quantise(w_c).detach(), B,
                                                     (H // c, W // c))
        coef_bits = (self.coef_prior.bits(noisy_y, tables_y).reshape(B, -1).sum(1)
                     + self.coef_prior.bits(noisy_c, tables_c).reshape(B, -1).sum(1))
        grid_y, grid_c = self.mean_grids(luma, chroma)
        mean_bits = self.mean_bits(grid_y + torch.rand_like(grid_y) - 0.5, grid_c + torch.rand_like(grid_c) - 0.5,
                                   noisy=True)
        q_y = w_y + (self.quantise(w_y) - w_y).detach()
        q_c = w_c + (self.quantise(w_c) - w_c).detach()
        code_y, code_c = self.codes(q_y, q_c, torch.round(grid_y), torch.round(grid_c))
        out = self.synthesize(code_y, code_c, B, (H // c, W // c), steps=self.config.train_decode_steps)
        mse = (out - rgb).pow(2).mean() * 255.0**2
        pixels = H * W
        return {
            "bpp": (coef_bits + mean_bits).mean() / pixels,
            "mean_bpp": mean_bits.mean() / pixels,
            "mse": mse,
        }

    # ------------------------------------------------------------------ export
    def integer_tables(self):
        """The entropy model as integer counts ``(coef, mean)`` (see :mod:`neural_collages.table_coding`)."""
        from ..table_coding import quantise_pmf

        with torch.no_grad():
            coef = quantise_pmf(self.coef_prior.probabilities().double().numpy())
            mean = quantise_pmf(self.mean_prior.probabilities().double().numpy())
        return np.asarray(coef), np.asarray(mean)
