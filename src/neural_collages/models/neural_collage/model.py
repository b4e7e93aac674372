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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...coding.contexts import NUM_CONTEXTS, NUM_MEAN_CONTEXTS, context_grid, mean_context_grid
from ...coding.predictors import med_predict
from ...core.codes import DenseCode, contractive_weights
from ...core.operator import CollageOperator
from ...errors import ConfigurationError
from ...imaging.colour import downsample_2x, rgb_to_ycbcr, upsample_2x, ycbcr_to_rgb
from ...imaging.tensors import from_crops, to_crops
from .config import RANGE, NeuralCodecConfig
from .encoder import CropEncoder
from .prior import FactorizedPrior


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
        frames = [self.planes_to_rgb(luma, chroma) for luma, chroma in
                  self.synthesize_planes(code_y, code_c, batch, grid, scale, steps, tol, max_steps, trajectory)]
        return (frames[-1], frames) if trajectory else frames[-1]

    def synthesize_planes(self, code_y, code_c, batch: int, grid: tuple[int, int], scale: int = 1,
                          steps: int | None = None, tol: float = 1e-5, max_steps: int = 60,
                          trajectory: bool = False, aux_interpolation: str = "nearest",
                          ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`synthesize` before colour: ``(luma (B, 1, sH, sW), chroma (B, 2, sh, sw))`` per frame
        (the fixed point only, unless ``trajectory``); ``aux_interpolation`` resamples the learned
        patches at ``scale > 1`` (:func:`neural_collages.core.pooling.aux_at_scale`)."""
        paths = []
        for op, code in ((self.luma_op, code_y), (self.chroma_op, code_c)):
            op = op.with_aux_interpolation(aux_interpolation)
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
        return [tuple(from_crops(p[min(i, len(p) - 1)], batch, grid) for p in paths) for i in range(n)]

    def planes_to_rgb(self, luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
        """RGB ``(B, 3, H, W)`` in [0, 1] of decoded luma ``(B, 1, H, W)`` and chroma planes."""
        ycc = torch.cat([luma, self.upsample_chroma(chroma)], 1)
        return ycbcr_to_rgb(ycc * 255.0) * (1 / 255.0)

    def upsample_chroma(self, chroma: torch.Tensor) -> torch.Tensor:
        """Chroma ``(B, 2, h, w)`` at luma resolution, as :meth:`planes_to_rgb` interpolates it."""
        return upsample_2x(chroma) if self.chroma_factor == 2 else chroma

    def decode_planes(self, code_y, code_c, grid: tuple[int, int], scale: int = 1, tol: float = 1e-5,
                      max_steps: int = 60, budget: int = 1 << 24,
                      aux_interpolation: str = "nearest") -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed points of one image's luma ``(1, sH, sW)`` and chroma ``(2, sh, sw)`` planes, in bands.

        Crops are independent collages, so they are decoded a band of crop rows at a time, each
        band holding about ``budget`` pooled candidate values (the step's largest temporary):
        memory stays a few planes however large the output. Each band iterates to ``tol`` on its
        own, so the result agrees with :meth:`synthesize`'s planes to within the tolerance, not
        bit for bit.
        """
        rows, cols = grid
        planes = []
        for op, code in ((self.luma_op, code_y), (self.chroma_op, code_c)):
            op = op.with_aux_interpolation(aux_interpolation)
            h, w = scale * op.size[0], scale * op.size[1]
            P = (scale * RANGE) ** 2
            plane = torch.empty(code.bias.shape[1], rows * h, cols * w, dtype=code.bias.dtype)
            per_row = cols * op.num_ranges * max(1, op.num_candidates) * P
            band = max(1, budget // per_row)
            for r0 in range(0, rows, band):
                r1 = min(rows, r0 + band)
                part = DenseCode(code.weights[r0 * cols : r1 * cols], code.bias[r0 * cols : r1 * cols])
                init = op.assemble(part.bias.unsqueeze(-1).expand(-1, -1, -1, P), scale)
                z, _ = op.decode(part, scale, init=init, tol=tol, max_steps=max_steps, check_contraction=False)
                plane[:, r0 * h : r1 * h] = from_crops(z, 1, (r1 - r0, cols))[0]
            planes.append(plane)
        return planes[0], planes[1]

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
        """The entropy model as integer counts ``(coef, mean)`` (see :mod:`neural_collages.coding.table_coding`)."""
        from ...coding.table_coding import quantise_pmf

        with torch.no_grad():
            coef = quantise_pmf(self.coef_prior.probabilities().double().numpy())
            mean = quantise_pmf(self.mean_prior.probabilities().double().numpy())
        return np.asarray(coef), np.asarray(mean)
