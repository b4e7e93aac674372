"""The collage operator: a partitioned iterated function system as a differentiable torch module.

One step cuts the image into domain cells (several sizes, on lattices with any stride, under
chosen isometries) plus auxiliary patches, average-pools each candidate to the range size, sets
every range cell to ``Σ_d w_rd · candidate_d + b_r`` and stitches the ranges back. With
``Σ_d |w_rd| < 1`` the step contracts in the sup norm, so :meth:`CollageOperator.decode` reaches
the same fixed point from any start.

Implementation: per scale the operator builds integer tables (``partitions.py``) mapping every
candidate pixel to a position in a flat buffer of pooled images. A step is then one average pool
per domain size, one gather and one multiply-add — dense codes contract the gathered candidates
with a batched matmul, sparse codes gather only the ``k`` chosen candidates per range and never
form a range × candidate matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .codes import Code, DenseCode, SparseCode, _check_s_max, contractive_weights
from .errors import CodeError, ConfigurationError
from .partitions import (
    ISOMETRY_NAMES,
    CandidateInfo,
    CandidateTables,
    DomainLattice,
    RangeGrid,
    _pair,
    build_candidate_tables,
    isometry_index,
    isometry_swaps_axes,
)
from .solvers import DecodeStats, anderson, picard

CHANNEL_MAPS = ("per_channel", "shared")


@dataclass
class PreparedCode:
    """A validated code with the gather indices one scale needs (from :meth:`CollageOperator.prepare`)."""

    kind: str  # "dense" or "sparse"
    scale: int
    code: Code
    index: torch.Tensor | None = None  # sparse: (B, k, C, N) positions in the flat pooled buffer
    scales: torch.Tensor | None = None  # sparse: (B, k, Cw, N) weight of each output pixel
    pixel_range: torch.Tensor | None = None  # sparse: (N,) range of each output pixel
    positions: torch.Tensor | None = None  # sparse on a range subset: (N,) raster positions written
    domain: torch.Tensor | None = None  # centred sparse: (B, Cw, R, k) domain cell of each pick, -1 for aux
    bias_index: torch.Tensor | None = None  # sparse: (B·C·N,) position of each pixel's bias in the flat (B, C, R) bias


def _pair_list(value, name: str) -> list[tuple[int, int]]:
    """Sizes as a list of pairs: an int or a tuple is one size, a list holds several sizes."""
    if isinstance(value, list):
        return [_pair(v, name) for v in value]
    return [_pair(value, name)]


def average_pool(z: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """Average pooling of ``(B, C, H, W)`` images (no padding).

    Small kernels are summed from strided slices, separably: on CPU this is several times faster
    than ``F.avg_pool2d`` for the 2×2 pooling of classic fractal coding, and it is just as exact.
    """
    (ah, aw), (th, tw) = kernel, stride
    if (ah, aw) == (1, 1):
        return z
    if ah * aw > 16:
        return F.avg_pool2d(z, kernel, stride)
    H, W = z.shape[-2:]
    bh, bw = (H - ah) // th + 1, (W - aw) // tw + 1
    rows = z[..., 0 : th * (bh - 1) + 1 : th, :]
    for u in range(1, ah):
        rows = rows + z[..., u : u + th * (bh - 1) + 1 : th, :]
    out = rows[..., 0 : tw * (bw - 1) + 1 : tw]
    for v in range(1, aw):
        out = out + rows[..., v : v + tw * (bw - 1) + 1 : tw]
    return out * (1.0 / (ah * aw))


def _check_scale(scale) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ConfigurationError(f"scale must be an integer >= 1, got {scale!r}")
    return scale


class CollageOperator(nn.Module):
    """A collage operator configured for images of one base size.

    Args:
        size: base image size ``(H, W)`` (an int means square).
        channels: number of image channels ``C``.
        range_size: range cell size ``(rh, rw)``; must tile the image.
        domain_size: one domain cell size (an int or an ``(h, w)`` tuple) or a *list* of sizes
            (multi-scale: ``[8, 16]`` is two square sizes, ``(8, 16)`` one 8×16 size). Each must be an integer
            multiple of the range size and fit in the image; ``(H, W)`` makes the whole image the
            only domain. ``None`` or ``[]`` for no domain cells (auxiliary patches only).
        domain_stride: lattice stride of each domain size (one value for all, or a list aligned
            with ``domain_size``); defaults to the domain size (non-overlapping cells).
        isometries: which of the 8 square isometries each domain is tried under (names from
            :data:`ISOMETRY_NAMES` or numbers 0-7); quarter turns need square range cells.
        aux_patches: ``0``; a number of learned patches (an ``nn.Parameter`` initialised uniformly
            in [0, 1]); or a tensor ``(N, C or 1, ph, pw)`` used as given (pass an
            ``nn.Parameter`` to learn it from that start). Patches are images at the base
            resolution of size ``aux_patch_size`` (a multiple of the range size): at scale ``s``
            they are nearest-upsampled by ``s`` and average-pooled to the range cell, exactly like
            a domain cell, which keeps every scale consistent with the 1× decode.
        aux_patch_size: size of learned auxiliary patches (default: the range size).
        channel_maps: ``"per_channel"`` (weights per channel, ``Cw = C``) or ``"shared"``
            (one set of weights for all channels, ``Cw = 1``; biases stay per channel).
        s_max: contraction bound used by :meth:`random_code` and :meth:`parametrize`; in (0, 1).
        centred: make every candidate zero-mean (per channel) before weighting, so a range is
            ``Σ_d w_rd · (candidate_d − mean candidate_d) + b_r`` and ``b_r`` is the range's mean
            (the classic fractal coder's mean-removed maps, whose means can be predicted and
            coded apart). The step's sup-norm Lipschitz bound is then ``2 Σ|w|``
            (:meth:`lipschitz_bound`).
    """

    def __init__(
        self,
        size,
        channels: int = 3,
        range_size=8,
        domain_size=16,
        domain_stride=None,
        isometries: Sequence = ("identity",),
        aux_patches=0,
        aux_patch_size=None,
        channel_maps: str = "per_channel",
        s_max: float = 0.95,
        centred: bool = False,
    ):
        super().__init__()
        self.size = _pair(size, "size")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ConfigurationError(f"channels must be a positive int, got {channels!r}")
        self.channels = channels
        H, W = self.size
        rh, rw = self.range_size = _pair(range_size, "range_size")
        if H % rh or W % rw:
            raise ConfigurationError(f"range cells {rh}x{rw} do not tile a {H}x{W} image (pad the image first)")
        self.s_max = _check_s_max(s_max)
        self.centred = bool(centred)
        if channel_maps not in CHANNEL_MAPS:
            raise ConfigurationError(f"channel_maps must be one of {CHANNEL_MAPS}, got {channel_maps!r}")
        self.channel_maps = channel_maps

        domain_sizes = [] if domain_size is None else _pair_list(domain_size, "domain_size")
        if domain_stride is None:
            strides = list(domain_sizes)
        else:
            strides = _pair_list(domain_stride, "domain_stride")
            if len(strides) == 1 and len(domain_sizes) > 1:
                strides = strides * len(domain_sizes)
            if len(strides) != len(domain_sizes):
                raise ConfigurationError(
                    f"got {len(strides)} domain strides for {len(domain_sizes)} domain sizes"
                )
        self.lattices: list[DomainLattice] = []
        for (dh, dw), stride in zip(domain_sizes, strides):
            if dh % rh or dw % rw:
                raise ConfigurationError(
                    f"domain size {dh}x{dw} is not an integer multiple of the range size {rh}x{rw}"
                )
            if dh > H or dw > W:
                raise ConfigurationError(f"domain size {dh}x{dw} does not fit in the {H}x{W} image")
            self.lattices.append(DomainLattice(self.size, (dh, dw), stride, self.range_size))

        try:
            iso_list = list(isometries)
        except TypeError:
            raise ConfigurationError(f"isometries must be a sequence, got {isometries!r}") from None
        self.isometries = [isometry_index(i) for i in iso_list]
        if self.lattices and not self.isometries:
            raise ConfigurationError("isometries must name at least one isometry (e.g. 'identity')")
        if len(set(self.isometries)) != len(self.isometries):
            raise ConfigurationError(f"isometries contain duplicates: {iso_list!r}")
        if rh != rw and any(isometry_swaps_axes(i) for i in self.isometries):
            raise ConfigurationError(
                f"quarter-turn isometries need square range cells, range cells are {rh}x{rw}"
            )

        self.aux_patches = self._make_aux(aux_patches, aux_patch_size)
        if self.num_candidates == 0:
            raise ConfigurationError("the operator has no candidates: give domain sizes or auxiliary patches")
        self._tables: dict[tuple[int, str], CandidateTables] = {}
        self._rows: dict[tuple[int, str, int], torch.Tensor] = {}

    # ------------------------------------------------------------------ configuration
    def _make_aux(self, aux_patches, aux_patch_size):
        rh, rw = self.range_size
        if isinstance(aux_patches, torch.Tensor):
            patches = aux_patches
            if patches.dim() != 4 or patches.shape[1] not in (1, self.channels):
                raise ConfigurationError(
                    f"aux_patches must have shape (N, {self.channels} or 1, ph, pw), got {tuple(patches.shape)}"
                )
            if not patches.is_floating_point():
                raise ConfigurationError("aux_patches must be a floating-point tensor")
        else:
            if isinstance(aux_patches, bool) or not isinstance(aux_patches, int) or aux_patches < 0:
                raise ConfigurationError(f"aux_patches must be a count >= 0 or a tensor, got {aux_patches!r}")
            ph, pw = _pair(aux_patch_size, "aux_patch_size") if aux_patch_size is not None else (rh, rw)
            patches = nn.Parameter(torch.rand(aux_patches, self.channels, ph, pw))
        ph, pw = patches.shape[-2:]
        if ph % rh or pw % rw or ph == 0 or pw == 0:
            raise ConfigurationError(
                f"auxiliary patch size {ph}x{pw} is not a positive multiple of the range size {rh}x{rw}"
            )
        if isinstance(patches, nn.Parameter):
            self.register_parameter("aux_patches", patches)
        else:
            self.register_buffer("aux_patches", patches)
        return patches

    @property
    def range_grid(self) -> RangeGrid:
        return RangeGrid(self.size, self.range_size)

    @property
    def num_ranges(self) -> int:
        return self.range_grid.count

    @property
    def num_domains(self) -> int:
        """Domain cells over all lattices (before isometries)."""
        return sum(l.count for l in self.lattices)

    @property
    def num_aux(self) -> int:
        return self.aux_patches.shape[0]

    @property
    def num_candidates(self) -> int:
        """``D``: domain cells × isometries + auxiliary patches."""
        return self.num_domains * len(self.isometries) + self.num_aux

    @property
    def weight_channels(self) -> int:
        """``Cw``: channels of the weight tensors (C per channel, 1 shared)."""
        return self.channels if self.channel_maps == "per_channel" else 1

    def candidate_info(self, index: int) -> CandidateInfo:
        """Describe candidate ``index``: which domain cell and isometry, or which aux patch."""
        if not 0 <= index < self.num_candidates:
            raise CodeError(f"candidate index {index} out of range [0, {self.num_candidates})")
        n_iso = len(self.isometries)
        rest = index
        for g, lattice in enumerate(self.lattices):
            n = lattice.count * n_iso
            if rest < n:
                domain, iso = divmod(rest, n_iso)
                return CandidateInfo(
                    index,
                    "domain",
                    lattice=g,
                    origin=lattice.origins()[domain],
                    cell_size=lattice.cell_size,
                    isometry=ISOMETRY_NAMES[self.isometries[iso]],
                )
            rest -= n
        return CandidateInfo(index, "aux", aux_index=rest)

    def extra_repr(self) -> str:
        domains = ", ".join(f"{l.cell_size[0]}x{l.cell_size[1]}/{l.stride[0]}x{l.stride[1]}" for l in self.lattices)
        return (
            f"size={self.size}, channels={self.channels}, range={self.range_size}, domains=[{domains}], "
            f"isometries={len(self.isometries)}, aux={self.num_aux}, candidates={self.num_candidates}, "
            f"ranges={self.num_ranges}, channel_maps={self.channel_maps!r}, s_max={self.s_max}"
            + (", centred=True" if self.centred else "")
        )

    # ------------------------------------------------------------------ tables
    def tables(self, scale: int = 1, device=None) -> CandidateTables:
        """Index tables at ``scale`` on ``device`` (built once, cached)."""
        scale = _check_scale(scale)
        device = torch.device(device) if device is not None else self.aux_patches.device
        key = (scale, str(device))
        if key not in self._tables:
            cpu_key = (scale, "cpu")
            if cpu_key not in self._tables:
                self._tables[cpu_key] = build_candidate_tables(
                    self.lattices, self.isometries, self.range_grid, self.num_aux, scale
                )
            self._tables[key] = self._tables[cpu_key].to(device)
        return self._tables[key]

    def _candidate_rows(self, scale: int, device, count: int) -> torch.Tensor:
        """Buffer positions ``(count, P)`` of the first ``count`` candidates (cached; dense codes)."""
        key = (scale, str(device), count)
        if key not in self._rows:
            self._rows[key] = self.tables(scale, device).rows(torch.arange(count, device=device))
        return self._rows[key]

    # ------------------------------------------------------------------ the step
    def _check_image(self, z: torch.Tensor, scale: int) -> None:
        H, W = self.size
        expected = (self.channels, scale * H, scale * W)
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or tuple(z.shape[1:]) != expected:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise CodeError(f"expected images of shape (B, {expected[0]}, {expected[1]}, {expected[2]}), got {got}")

    def pooled_buffer(self, z: torch.Tensor, scale: int = 1, include_aux: bool = True) -> torch.Tensor:
        """Flat buffer ``(B, C, L)`` of every pooled pixel a candidate can read (domains, then aux)."""
        layout = self.tables(scale)
        B = z.shape[0]
        parts = []
        for kernel, stride in zip(layout.pool_kernels, layout.pool_strides):
            parts.append(average_pool(z, kernel, stride).flatten(2))
        if self.num_aux and include_aux:
            aux = self._aux_at_scale(scale, z.dtype).to(z.device)  # (C, N, P)
            parts.append(aux.reshape(1, self.channels, -1).expand(B, -1, -1))
        if not parts:
            return z.new_zeros(B, self.channels, 0)
        return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]

    def domain_means(self, buffer: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """Mean of every domain cell's pooled block, ``(B, C, num_domains)``, from a pooled buffer.

        Summed in a fixed order (separable strided slices), so the result does not depend on the
        machine or the thread count; centred codes rely on it for bit-exact decoding.
        """
        layout = self.tables(scale)
        B, C = buffer.shape[:2]
        ph, pw = scale * self.range_size[0], scale * self.range_size[1]
        means = []
        for g, lattice in enumerate(self.lattices):
            bh, bw = layout.buffer_shapes[g]
            plane = buffer[:, :, layout.buffer_offsets[g] : layout.buffer_offsets[g] + bh * bw].reshape(B, C, bh, bw)
            (ah, aw), (th, tw) = layout.pool_kernels[g], layout.pool_strides[g]
            dil_h, dil_w = ah // th, aw // tw
            rows, cols = lattice.grid
            # Exact divisions whenever there is more than one cell along an axis (pooled_stride).
            step_h = scale * lattice.stride[0] // th if rows > 1 else 1
            step_w = scale * lattice.stride[1] // tw if cols > 1 else 1
            span_h, span_w = step_h * (rows - 1) + 1, step_w * (cols - 1) + 1
            acc = plane[:, :, 0:span_h:step_h, :]
            for i in range(1, ph):
                acc = acc + plane[:, :, i * dil_h : i * dil_h + span_h : step_h, :]
            out = acc[..., 0:span_w:step_w]
            for j in range(1, pw):
                out = out + acc[..., j * dil_w : j * dil_w + span_w : step_w]
            means.append((out * (1.0 / (ph * pw))).flatten(2))
        if not means:
            return buffer.new_zeros(B, C, 0)
        return torch.cat(means, dim=2) if len(means) > 1 else means[0]

    def _range_pixels(self, scale: int) -> int:
        return scale * self.range_size[0] * scale * self.range_size[1]

    def _aux_at_scale(self, scale: int, dtype) -> torch.Tensor:
        """Aux patches at ``scale``: (C, N, P) — nearest-upsampled by ``scale``, pooled to the range size."""
        patches = self.aux_patches.to(dtype)
        if scale > 1:
            patches = patches.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
        kh = patches.shape[-2] // (scale * self.range_size[0])
        kw = patches.shape[-1] // (scale * self.range_size[1])
        if (kh, kw) != (1, 1):
            patches = F.avg_pool2d(patches, (kh, kw))
        patches = patches.expand(-1, self.channels, -1, -1)
        out = patches.flatten(2).transpose(0, 1)  # (C, N, P)
        if self.centred:
            out = out - out.mean(dim=-1, keepdim=True)
        return out

    def candidates(self, z: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """All pooled candidates of ``z``: ``(B, C, D, P)`` with ``P = (s·rh)·(s·rw)`` (centred if the operator is)."""
        scale = _check_scale(scale)
        self._check_image(z, scale)
        n_dom = self.num_candidates - self.num_aux
        buffer = self.pooled_buffer(z, scale, include_aux=False)
        cand = buffer[:, :, self._candidate_rows(scale, z.device, n_dom)]
        if self.centred and n_dom:
            means = self.domain_means(buffer, scale)
            cand = cand - means.repeat_interleave(len(self.isometries), dim=2).unsqueeze(-1)
        if self.num_aux:
            aux = self._aux_at_scale(scale, z.dtype).to(z.device)
            cand = torch.cat([cand, aux.unsqueeze(0).expand(z.shape[0], -1, -1, -1)], dim=2)
        return cand

    def ranges(self, z: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """The range cells of ``z`` as ``(B, C, R, P)`` (row-major ranges, raster pixels)."""
        scale = _check_scale(scale)
        self._check_image(z, scale)
        B, C = z.shape[:2]
        rows, cols = self.range_grid.grid
        ph, pw = scale * self.range_size[0], scale * self.range_size[1]
        cells = z.reshape(B, C, rows, ph, cols, pw).permute(0, 1, 2, 4, 3, 5)
        return cells.reshape(B, C, rows * cols, ph * pw)

    def assemble(self, ranges: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """Inverse of :meth:`ranges`: ``(B, C, R, P)`` -> ``(B, C, sH, sW)``."""
        B, C = ranges.shape[:2]
        rows, cols = self.range_grid.grid
        ph, pw = scale * self.range_size[0], scale * self.range_size[1]
        cells = ranges.reshape(B, C, rows, cols, ph, pw).permute(0, 1, 2, 4, 3, 5)
        return cells.reshape(B, C, rows * ph, cols * pw)

    def _check_subset(self, ranges) -> torch.Tensor | None:
        if ranges is None:
            return None
        if not isinstance(ranges, torch.Tensor) or ranges.dtype != torch.long or ranges.dim() != 1:
            raise CodeError("ranges must be a 1-D int64 tensor of range numbers")
        if ranges.numel() and (int(ranges.min()) < 0 or int(ranges.max()) >= self.num_ranges):
            raise CodeError(f"range numbers must lie in [0, {self.num_ranges})")
        if torch.unique(ranges).numel() != ranges.numel():
            raise CodeError("range numbers must not repeat")
        return ranges

    def validate_code(self, code: Code, ranges: torch.Tensor | None = None) -> None:
        """Raise :class:`CodeError` unless ``code`` fits this operator (on the range subset ``ranges``)."""
        C, Cw, D = self.channels, self.weight_channels, self.num_candidates
        R = self.num_ranges if ranges is None else ranges.numel()
        if isinstance(code, DenseCode):
            if ranges is not None:
                raise CodeError("range subsets are supported for sparse codes only")
            w, b = code.weights, code.bias
            if not (isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor)):
                raise CodeError("a DenseCode holds tensors")
            B = b.shape[0] if b.dim() == 3 else -1
            if w.dim() != 4 or tuple(w.shape) != (B, Cw, R, D):
                raise CodeError(f"dense weights must have shape (B, {Cw}, {R}, {D}), got {tuple(w.shape)}")
            tensors = (w, b)
        elif isinstance(code, SparseCode):
            i, s, b = code.index, code.scale, code.bias
            if not all(isinstance(t, torch.Tensor) for t in (i, s, b)):
                raise CodeError("a SparseCode holds tensors")
            B = b.shape[0] if b.dim() == 3 else -1
            if i.dim() != 4 or i.shape[:3] != (B, Cw, R) or i.shape[3] < 1:
                raise CodeError(f"sparse index must have shape (B, {Cw}, {R}, k>=1), got {tuple(i.shape)}")
            if s.shape != i.shape:
                raise CodeError(f"sparse scale shape {tuple(s.shape)} differs from index shape {tuple(i.shape)}")
            if i.dtype != torch.long:
                raise CodeError(f"sparse index must be int64, got {i.dtype}")
            if i.numel() and (int(i.min()) < 0 or int(i.max()) >= D):
                raise CodeError(f"sparse index out of range [0, {D})")
            tensors = (s, b)
        else:
            raise CodeError(f"expected a DenseCode or SparseCode, got {type(code).__name__}")
        if b.dim() != 3 or tuple(b.shape[1:]) != (C, R):
            raise CodeError(f"bias must have shape (B, {C}, {R}), got {tuple(b.shape)}")
        if not all(t.is_floating_point() for t in tensors):
            raise CodeError("code weights and biases must be floating point")

    def prepare(self, code: Code, scale: int = 1, ranges: torch.Tensor | None = None) -> PreparedCode:
        """Validate ``code`` and precompute what repeated steps at ``scale`` need (used by :meth:`decode`).

        ``ranges`` (sparse codes only) restricts the code to a subset of the range cells: the
        code then has one entry per listed range, and :meth:`apply_prepared` writes only their
        pixels into a given image. Composite partitions (quadtrees) are built from such subsets.
        """
        scale = _check_scale(scale)
        ranges = self._check_subset(ranges)
        self.validate_code(code, ranges)
        if isinstance(code, DenseCode):
            return PreparedCode("dense", scale, code)
        device = code.bias.device
        tables = self.tables(scale, device)
        B, Cw, R, k = code.index.shape
        C = self.channels
        P = self._range_pixels(scale)
        if ranges is None:
            # Gather indices straight into image raster order: a step is then pool -> one
            # gather and one multiply-add per pick, with no reshuffling afterwards.
            order = tables.range_pixel_order
            pixel_range = order // P
            positions = None
        else:
            order = None
            pixel_range = torch.arange(R, device=device).repeat_interleave(P)
            inverse = torch.empty_like(tables.range_pixel_order)
            inverse[tables.range_pixel_order] = torch.arange(inverse.numel(), device=device)
            positions = inverse.reshape(self.num_ranges, P)[ranges].reshape(-1)
        idx = tables.rows(code.index)  # (B, Cw, R, k, P)
        idx = idx.permute(0, 1, 3, 2, 4).reshape(B, Cw, k, R * P)
        if order is not None:
            idx = idx[..., order]
        # index_select on the flattened buffer is several times faster than torch.gather on CPU:
        # fold the (batch, channel) offset of each buffer plane into the index.
        L = tables.buffer_length
        plane = (torch.arange(B, device=device)[:, None] * C + torch.arange(C, device=device)[None, :]) * L
        idx = idx.expand(B, C, k, -1) + plane[:, :, None, None]
        if B * C * L < 2**31:
            idx = idx.to(torch.int32)
        idx = idx.transpose(1, 2).contiguous()  # (B, k, C, N): one contiguous index per pick
        scales = code.scale.transpose(2, 3)[..., pixel_range].transpose(1, 2).contiguous()  # (B, k, Cw, N)
        domain = None
        if self.centred:
            n_dom = self.num_candidates - self.num_aux
            domain = torch.where(code.index < n_dom, code.index // len(self.isometries or [0]), -1)
        # Per-pixel biases by one flat gather: index_select along dim 2 of a (B, C, R) tensor
        # is ~20x slower on CPU than on a flat vector (measured).
        bias_index = (torch.arange(B * C, device=device)[:, None] * R + pixel_range[None, :]).reshape(-1)
        if B * C * R < 2**31:
            bias_index = bias_index.to(torch.int32)
        return PreparedCode("sparse", scale, code, idx, scales, pixel_range, positions, domain, bias_index)

    def apply_prepared(self, z: torch.Tensor, prepared: PreparedCode, out: torch.Tensor | None = None) -> torch.Tensor:
        """One step with a code from :meth:`prepare`.

        For a code on a range subset, ``out`` is the image whose other pixels are kept; the
        subset's pixels are replaced (in place when no gradient is being recorded).
        """
        scale, code = prepared.scale, prepared.code
        self._check_image(z, scale)
        if z.shape[0] != code.batch_size:
            raise CodeError(f"image batch {z.shape[0]} differs from code batch {code.batch_size}")
        B, C = z.shape[:2]
        sH, sW = scale * self.size[0], scale * self.size[1]
        if prepared.kind == "dense":
            return self._dense_step(z, code, scale)
        buffer = self.pooled_buffer(z, scale)  # (B, C, L)
        constant = code.bias  # (B, C, R)
        if prepared.domain is not None:
            constant = constant - self._picked_means(buffer, prepared, scale)
        values = torch.index_select(constant.reshape(-1), 0, prepared.bias_index).reshape(B, C, -1)
        flat = buffer.reshape(-1)
        for j in range(prepared.index.shape[1]):
            picked = torch.index_select(flat, 0, prepared.index[:, j].reshape(-1)).reshape(B, C, -1)
            # Separate multiply and add (no fused multiply-add): every op is correctly rounded
            # IEEE arithmetic, so decoding is bit-exact across machines and thread counts.
            values = values + picked * prepared.scales[:, j]
        if prepared.positions is None:
            return values.reshape(B, C, sH, sW)
        if out is None:
            raise CodeError("a code on a range subset needs the image to write into (out=...)")
        self._check_image(out, scale)
        if torch.is_grad_enabled() and (values.requires_grad or out.requires_grad):
            return out.reshape(B, C, -1).index_copy(2, prepared.positions, values).reshape(out.shape)
        out.reshape(B, C, -1).index_copy_(2, prepared.positions, values)
        return out

    def _picked_means(self, buffer: torch.Tensor, prepared: PreparedCode, scale: int) -> torch.Tensor:
        """``Σ_j s_j · mean(candidate_j)`` per range, ``(B, C, R)``, for centred codes."""
        code = prepared.code
        B, C = buffer.shape[:2]
        means = self.domain_means(buffer, scale)  # (B, C, Nd)
        if self.num_aux:
            means = torch.cat([means, buffer.new_zeros(B, C, 1)], dim=2)  # aux patches are centred already
        domain = torch.where(prepared.domain < 0, means.shape[2] - 1, prepared.domain)  # (B, Cw, R, k)
        total = None
        for j in range(code.k):
            mean_j = torch.gather(means, 2, domain[..., j].expand(B, C, -1))
            term = mean_j * code.scale[..., j]
            total = term if total is None else total + term
        return total

    def _dense_step(self, z: torch.Tensor, code: DenseCode, scale: int) -> torch.Tensor:
        # Domain candidates are gathered per image; auxiliary patches are the same for every
        # image, so their contribution is one broadcast matmul instead of B copies.
        n_dom = self.num_candidates - self.num_aux
        out = code.bias.unsqueeze(-1)
        if n_dom:
            buffer = self.pooled_buffer(z, scale, include_aux=False)
            cand = buffer[:, :, self._candidate_rows(scale, z.device, n_dom)]  # (B, C, D_dom, P)
            if self.centred:
                means = self.domain_means(buffer, scale).repeat_interleave(len(self.isometries), dim=2)
                cand = cand - means.unsqueeze(-1)
            out = torch.matmul(code.weights[..., :n_dom], cand) + out
        if self.num_aux:
            out = torch.matmul(code.weights[..., n_dom:], self._aux_at_scale(scale, z.dtype).to(z.device)) + out
        return self.assemble(out, scale)

    def step(self, z: torch.Tensor, code: Code, scale: int = 1) -> torch.Tensor:
        """One application of the collage operator to images ``z`` of shape ``(B, C, sH, sW)``."""
        return self.apply_prepared(z, self.prepare(code, scale))

    def forward(self, code: Code, scale: int = 1, **decode_options) -> torch.Tensor:
        """Decode ``code`` to its fixed point (the image only; see :meth:`decode` for options)."""
        return self.decode(code, scale, **decode_options)[0]

    def lipschitz_bound(self, code: Code) -> torch.Tensor:
        """Sup-norm Lipschitz bound of one step with ``code``, per sample.

        ``max_{c,r} Σ_d |w_crd|`` over the *domain* candidates only: auxiliary patches do not
        depend on the image, so their weights add constants and never affect the contraction
        (a code may weight them freely). Doubled for a centred operator, since
        ``‖x − mean(x)‖_∞ ≤ 2‖x‖_∞``. :func:`contraction_bound` (all candidates) is never smaller.
        """
        n_dom = self.num_candidates - self.num_aux
        if isinstance(code, DenseCode):
            weights = code.weights[..., :n_dom]
        elif isinstance(code, SparseCode):
            weights = torch.where(code.index < n_dom, code.scale, torch.zeros_like(code.scale))
        else:
            raise CodeError(f"expected a DenseCode or SparseCode, got {type(code).__name__}")
        if weights.shape[-1] == 0:
            bound = torch.zeros(weights.shape[0], dtype=weights.dtype, device=weights.device)
        else:
            bound = weights.detach().abs().sum(dim=-1).flatten(1).amax(dim=1)
        return 2 * bound if self.centred else bound

    def parametrize_domains(self, weights: torch.Tensor, bias: torch.Tensor, s_max: float | None = None) -> DenseCode:
        """A :class:`DenseCode` whose *domain* weights are contractive and whose aux weights are free.

        The domain part goes through :func:`contractive_weights` with ``s_max`` (default
        ``self.s_max``, halved for a centred operator) so that :meth:`lipschitz_bound` ≤ ``s_max``;
        the auxiliary-patch weights (constants, see :meth:`lipschitz_bound`) pass unchanged.
        """
        s_max = self.s_max if s_max is None else _check_s_max(s_max)
        if self.centred:
            s_max = s_max / 2
        n_dom = self.num_candidates - self.num_aux
        if weights.shape[-1] != self.num_candidates:
            raise CodeError(f"expected {self.num_candidates} weights per range, got {weights.shape[-1]}")
        dom = contractive_weights(weights[..., :n_dom], s_max) if n_dom else weights[..., :0]
        return DenseCode(torch.cat([dom, weights[..., n_dom:]], dim=-1), bias)

    # ------------------------------------------------------------------ decoding
    def decode(
        self,
        code: Code,
        scale: int = 1,
        init: torch.Tensor | None = None,
        tol: float = 1e-5,
        max_steps: int = 100,
        method: str = "picard",
        anderson_memory: int = 5,
        return_trajectory: bool = False,
        check_contraction: bool = True,
    ) -> tuple[torch.Tensor, DecodeStats]:
        """Iterate the operator to its fixed point at integer ``scale``.

        Starts from ``init`` (zeros by default) and stops once the sup-norm update is ≤ ``tol``
        or after ``max_steps`` steps (``tol=0`` runs exactly ``max_steps``: the usual choice for
        training through the unrolled iterations). ``method`` is ``"picard"`` (plain iteration)
        or ``"anderson"`` (Anderson acceleration). Returns the image ``(B, C, sH, sW)`` and a
        :class:`DecodeStats` (steps, last residual per sample, converged flag, and the list of
        iterates when ``return_trajectory``). With ``check_contraction`` a code whose bound is
        ≥ 1 is refused, since its iteration need not converge.
        """
        prepared = self.prepare(code, scale)
        if check_contraction:
            bound = self.lipschitz_bound(code)
            if bound.numel() and float(bound.max()) >= 1.0:
                raise CodeError(
                    f"code is not contractive (its Lipschitz bound reaches {float(bound.max()):.4f} >= 1); "
                    "use contractive_weights() or pass check_contraction=False"
                )
        B = code.batch_size
        sH, sW = scale * self.size[0], scale * self.size[1]
        dtype = code.bias.dtype
        if init is None:
            init = torch.zeros(B, self.channels, sH, sW, dtype=dtype, device=code.bias.device)
        else:
            self._check_image(init, scale)
            if init.shape[0] != B:
                raise CodeError(f"init batch {init.shape[0]} differs from code batch {B}")
            init = init.to(dtype)

        def step(z: torch.Tensor) -> torch.Tensor:
            return self.apply_prepared(z, prepared)

        if method == "picard":
            return picard(step, init, tol, max_steps, trajectory=return_trajectory)
        if method == "anderson":
            return anderson(step, init, tol, max_steps, memory=anderson_memory, trajectory=return_trajectory)
        raise ConfigurationError(f"method must be 'picard' or 'anderson', got {method!r}")

    # ------------------------------------------------------------------ training helpers
    def collage_loss(self, x: torch.Tensor, code: Code, reduction: str = "mean") -> torch.Tensor:
        """Collage loss ``‖x − F(x)‖²`` (mean squared error per sample, or its mean).

        By the collage theorem ``‖x − z*‖ ≤ ‖x − F(x)‖ / (1 − s)``, so it trains codes
        without solving for the fixed point (see :meth:`collage_error_bound`).
        """
        err = (x - self.step(x, code)).pow(2).flatten(1).mean(dim=1)
        if reduction == "mean":
            return err.mean()
        if reduction == "none":
            return err
        raise ConfigurationError(f"reduction must be 'mean' or 'none', got {reduction!r}")

    def collage_error_bound(self, x: torch.Tensor, code: Code) -> torch.Tensor:
        """Upper bound ``‖x − F(x)‖_∞ / (1 − s)`` on ``‖x − z*‖_∞`` per sample (collage theorem)."""
        s = self.lipschitz_bound(code)
        if float(s.max()) >= 1:
            raise CodeError("the collage theorem needs a contractive code (bound < 1)")
        gap = (x - self.step(x, code)).detach().abs().flatten(1).amax(dim=1)
        return gap / (1 - s)

    def parametrize(self, weights: torch.Tensor, bias: torch.Tensor) -> DenseCode:
        """A :class:`DenseCode` with bound ≤ ``self.s_max`` from unconstrained tensors."""
        return DenseCode.from_unconstrained(weights, bias, self.s_max)

    def random_code(
        self,
        batch_size: int = 1,
        generator: torch.Generator | None = None,
        kind: str = "dense",
        k: int = 1,
        dtype: torch.dtype = torch.float32,
        device=None,
    ) -> Code:
        """A random valid code (Lipschitz bound ≤ ``s_max``) for tests and demos; ``kind`` is dense or sparse."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be a positive int, got {batch_size!r}")
        B, C, Cw, R, D = batch_size, self.channels, self.weight_channels, self.num_ranges, self.num_candidates
        opts = dict(generator=generator, dtype=dtype)
        bias = torch.rand(B, C, R, **opts) * (1 - self.s_max)
        # A centred step's Lipschitz bound is twice Σ|w|: halve the weights to stay below s_max.
        s_max = self.s_max / 2 if self.centred else self.s_max
        if kind == "dense":
            u = torch.randn(B, Cw, R, D, **opts)
            # Random radius in (0, 1] so bounds are spread up to s_max, not all at it.
            u = u / u.abs().sum(-1, keepdim=True) * torch.rand(B, Cw, R, 1, **opts)
            code: Code = DenseCode.from_unconstrained(u, bias, s_max)
        elif kind == "sparse":
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ConfigurationError(f"k must be a positive int, got {k!r}")
            index = torch.randint(0, D, (B, Cw, R, k), generator=generator)
            u = (2 * torch.rand(B, Cw, R, k, **opts) - 1) / k
            code = SparseCode.from_unconstrained(index, u, bias, s_max)
        else:
            raise ConfigurationError(f"kind must be 'dense' or 'sparse', got {kind!r}")
        return code.to(device) if device is not None else code
