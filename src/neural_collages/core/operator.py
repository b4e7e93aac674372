"""The collage operator: a partitioned iterated function system as a differentiable torch module.

One step cuts the image into domain cells (several sizes, on lattices with any stride, under
chosen isometries) plus auxiliary patches, average-pools each candidate to the range size, sets
every range cell to ``Σ_d w_rd · candidate_d + b_r`` and stitches the ranges back. With
``Σ_d |w_rd| < 1`` the step contracts in the sup norm, so :meth:`CollageOperator.decode` reaches
the same fixed point from any start.

This module holds the configuration (geometry, candidates, auxiliary patches, cached index
tables) and is the public face; the work lives beside it: ``pooling`` (the flat buffer of pooled
pixels), ``step`` (code validation, gather indices, the step), ``decode`` (fixed-point
iteration), ``parametrize`` (Lipschitz bound, contractive parametrisations), ``collage_loss``
and ``random_codes``.
"""

from __future__ import annotations

import copy

from typing import Sequence

import torch
from torch import nn

from ..checks import pair, pair_list, positive_int
from ..errors import CodeError, ConfigurationError
from . import collage_loss as _loss
from . import decode as _decode
from . import parametrize as _param
from . import pooling, random_codes
from . import step as _step
from .codes import Code, DenseCode, check_s_max
from .partitions import (
    ISOMETRY_NAMES,
    CandidateInfo,
    CandidateTables,
    DomainLattice,
    RangeGrid,
    build_candidate_tables,
    isometry_index,
    isometry_swaps_axes,
)
from .solvers import DecodeStats
from .step import PreparedCode

CHANNEL_MAPS = ("per_channel", "shared")


def check_scale(scale) -> int:
    """``scale`` if it is an integer >= 1."""
    return positive_int(scale, "scale")

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
        self.size = pair(size, "size")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ConfigurationError(f"channels must be a positive int, got {channels!r}")
        self.channels = channels
        H, W = self.size
        rh, rw = self.range_size = pair(range_size, "range_size")
        if H % rh or W % rw:
            raise ConfigurationError(f"range cells {rh}x{rw} do not tile a {H}x{W} image (pad the image first)")
        self.s_max = check_s_max(s_max)
        self.centred = bool(centred)
        if channel_maps not in CHANNEL_MAPS:
            raise ConfigurationError(f"channel_maps must be one of {CHANNEL_MAPS}, got {channel_maps!r}")
        self.channel_maps = channel_maps

        domain_sizes = [] if domain_size is None else pair_list(domain_size, "domain_size")
        if domain_stride is None:
            strides = list(domain_sizes)
        else:
            strides = pair_list(domain_stride, "domain_stride")
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
        self.aux_interpolation = "nearest"  # see with_aux_interpolation
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
            ph, pw = pair(aux_patch_size, "aux_patch_size") if aux_patch_size is not None else (rh, rw)
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
        scale = check_scale(scale)
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

    def candidate_rows(self, scale: int, device, count: int) -> torch.Tensor:
        """Buffer positions ``(count, P)`` of the first ``count`` candidates (cached; dense codes)."""
        key = (scale, str(device), count)
        if key not in self._rows:
            self._rows[key] = self.tables(scale, device).rows(torch.arange(count, device=device))
        return self._rows[key]

    # ------------------------------------------------------------------ pooling
    def check_image(self, z: torch.Tensor, scale: int) -> None:
        """Raise :class:`CodeError` unless ``z`` is a batch of images of this operator at ``scale``."""
        H, W = self.size
        expected = (self.channels, scale * H, scale * W)
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or tuple(z.shape[1:]) != expected:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise CodeError(f"expected images of shape (B, {expected[0]}, {expected[1]}, {expected[2]}), got {got}")

    def range_pixels(self, scale: int) -> int:
        """``P``: pixels of one range cell at ``scale``."""
        return scale * self.range_size[0] * scale * self.range_size[1]

    def aux_at_scale(self, scale: int, dtype) -> torch.Tensor:
        """Auxiliary patches at ``scale``: ``(C, N, P)`` (see :func:`pooling.aux_at_scale`)."""
        return pooling.aux_at_scale(self.aux_patches, scale, self.range_size, self.channels, self.centred, dtype,
                                    self.aux_interpolation)

    def with_aux_interpolation(self, interpolation: str) -> "CollageOperator":
        """This operator (parameters and caches shared) resampling its auxiliary patches at scales
        above 1 by ``interpolation`` (``pooling.AUX_INTERPOLATIONS``); ``self`` if it already does.
        The 1× decode does not depend on it; a decoder picks it per file format version."""
        if interpolation not in pooling.AUX_INTERPOLATIONS:
            raise ConfigurationError(f"aux interpolation must be one of {pooling.AUX_INTERPOLATIONS}, "
                                     f"got {interpolation!r}")
        if interpolation == self.aux_interpolation:
            return self
        other = copy.copy(self)
        other.aux_interpolation = interpolation
        return other

    def pooled_buffer(self, z: torch.Tensor, scale: int = 1, include_aux: bool = True) -> torch.Tensor:
        """Flat buffer ``(B, C, L)`` of every pooled pixel a candidate can read (domains, then aux)."""
        aux = self.aux_at_scale(scale, z.dtype).to(z.device) if self.num_aux and include_aux else None
        return pooling.pooled_buffer(z, self.tables(scale), aux)

    def domain_means(self, buffer: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """Mean of every domain cell's pooled block, ``(B, C, num_domains)`` (fixed summation order)."""
        return pooling.domain_means(buffer, self.tables(scale), self.lattices, self.range_size, scale)

    def candidates(self, z: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """All pooled candidates of ``z``: ``(B, C, D, P)`` with ``P = (s·rh)·(s·rw)`` (centred if the operator is)."""
        scale = check_scale(scale)
        self.check_image(z, scale)
        n_dom = self.num_candidates - self.num_aux
        buffer = self.pooled_buffer(z, scale, include_aux=False)
        cand = buffer[:, :, self.candidate_rows(scale, z.device, n_dom)]
        if self.centred and n_dom:
            means = self.domain_means(buffer, scale)
            cand = cand - means.repeat_interleave(len(self.isometries), dim=2).unsqueeze(-1)
        if self.num_aux:
            aux = self.aux_at_scale(scale, z.dtype).to(z.device)
            cand = torch.cat([cand, aux.unsqueeze(0).expand(z.shape[0], -1, -1, -1)], dim=2)
        return cand

    def domain_cells(self, z: torch.Tensor) -> torch.Tensor:
        """Every domain cell of ``z`` pooled to the range size in its own pose (no isometry):
        ``(B, C, num_domains, P)``, centred if the operator is. A search that handles isometries
        itself needs only these, an eighth of :meth:`candidates`."""
        self.check_image(z, 1)
        if 0 not in self.isometries:  # ISOMETRY_NAMES[0] == "identity"
            raise ConfigurationError("domain_cells needs the identity among the operator's isometries")
        tables = self.tables(1, z.device)
        pose = self.isometries.index(0)
        rows = tables.domain_starts[:, None] + tables.local_offsets[tables.domain_lattice, pose]
        buffer = self.pooled_buffer(z, 1, include_aux=False)
        cells = buffer[:, :, rows]
        if self.centred and self.num_domains:
            cells = cells - self.domain_means(buffer, 1).unsqueeze(-1)
        return cells

    def ranges(self, z: torch.Tensor, scale: int = 1) -> torch.Tensor:
        """The range cells of ``z`` as ``(B, C, R, P)`` (row-major ranges, raster pixels)."""
        scale = check_scale(scale)
        self.check_image(z, scale)
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

    # ------------------------------------------------------------------ the step (step.py)
    def validate_code(self, code: Code, ranges: torch.Tensor | None = None) -> None:
        """Raise :class:`CodeError` unless ``code`` fits this operator (on the range subset ``ranges``)."""
        _step.validate_code(self, code, _step.check_subset(self, ranges))

    def prepare(self, code: Code, scale: int = 1, ranges: torch.Tensor | None = None) -> PreparedCode:
        """Validate ``code`` and precompute what repeated steps at ``scale`` need (used by :meth:`decode`).

        ``ranges`` (sparse codes only) restricts the code to a subset of the range cells: the
        code then has one entry per listed range, and :meth:`apply_prepared` writes only their
        pixels into a given image. Composite partitions (quadtrees) are built from such subsets.
        """
        return _step.prepare(self, code, check_scale(scale), ranges)

    def apply_prepared(self, z: torch.Tensor, prepared: PreparedCode, out: torch.Tensor | None = None,
                       buffer: torch.Tensor | None = None, means: torch.Tensor | None = None) -> torch.Tensor:
        """One step with a code from :meth:`prepare` (``out``: the image a range-subset code writes into;
        ``buffer`` / ``means``: this step's pooled buffer and domain means, when shared by several subsets)."""
        return _step.apply_prepared(self, z, prepared, out, buffer, means)

    def step(self, z: torch.Tensor, code: Code, scale: int = 1) -> torch.Tensor:
        """One application of the collage operator to images ``z`` of shape ``(B, C, sH, sW)``."""
        return self.apply_prepared(z, self.prepare(code, scale))

    def forward(self, code: Code, scale: int = 1, **decode_options) -> torch.Tensor:
        """Decode ``code`` to its fixed point (the image only; see :meth:`decode` for options)."""
        return self.decode(code, scale, **decode_options)[0]

    # ------------------------------------------------------------------ contraction (parametrize.py)
    def lipschitz_bound(self, code: Code) -> torch.Tensor:
        """Sup-norm Lipschitz bound of one step with ``code``, per sample.

        ``max_{c,r} Σ_d |w_crd|`` over the *domain* candidates only (auxiliary patches are
        constants), doubled for a centred operator. :func:`contraction_bound` (all candidates,
        undoubled) is a different quantity: it bounds the code on its own.
        """
        return _param.lipschitz_bound(self, code)

    def parametrize(self, weights: torch.Tensor, bias: torch.Tensor) -> DenseCode:
        """A :class:`DenseCode` with bound ≤ ``self.s_max`` from unconstrained tensors."""
        return _param.parametrize(self, weights, bias)

    def parametrize_domains(self, weights: torch.Tensor, bias: torch.Tensor, s_max: float | None = None) -> DenseCode:
        """A :class:`DenseCode` whose *domain* weights are contractive and whose aux weights are free."""
        return _param.parametrize_domains(self, weights, bias, s_max)

    # ------------------------------------------------------------------ decoding (decode.py)
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
        return _decode.decode(
            self, code, scale, init, tol, max_steps, method, anderson_memory, return_trajectory, check_contraction
        )

    # ------------------------------------------------------------------ training helpers
    def collage_loss(self, x: torch.Tensor, code: Code, reduction: str = "mean") -> torch.Tensor:
        """Collage loss ``‖x − F(x)‖²`` per sample (``reduction="none"``) or its mean (collage_loss.py)."""
        return _loss.collage_loss(self, x, code, reduction)

    def collage_error_bound(self, x: torch.Tensor, code: Code) -> torch.Tensor:
        """Upper bound ``‖x − F(x)‖_∞ / (1 − s)`` on ``‖x − z*‖_∞`` per sample (collage theorem)."""
        return _loss.collage_error_bound(self, x, code)

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
        return random_codes.random_code(self, batch_size, generator, kind, k, dtype, device)
