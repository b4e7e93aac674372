"""Geometry of a collage: the range grid, domain lattices, isometries and pixel index tables.

Everything here is integer bookkeeping, computed once per (operator, scale) and cached by the
operator. A collage step then only pools the image, gathers pixels through these tables and
applies the affine maps, which keeps the step close to memory-bandwidth speed and makes every
domain size, stride, isometry and auxiliary patch the same kind of object: a *candidate*, i.e.
a table of ``P = (s·rh)·(s·rw)`` source positions in a flat buffer of pooled pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import torch

from ..errors import ConfigurationError

#: The 8 isometries of the square. Isometry ``k`` mirrors left-right when ``k >= 4`` and then
#: rotates counter-clockwise by ``90° · (k % 4)`` (``torch.rot90`` on the last two dims).
ISOMETRY_NAMES: tuple[str, ...] = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip",
    "flip_rot90",
    "flip_rot180",
    "flip_rot270",
)


def isometry_index(iso) -> int:
    """Map an isometry given by name or number to its number in :data:`ISOMETRY_NAMES`."""
    if isinstance(iso, str):
        if iso not in ISOMETRY_NAMES:
            raise ConfigurationError(f"unknown isometry {iso!r}; choose from {', '.join(ISOMETRY_NAMES)}")
        return ISOMETRY_NAMES.index(iso)
    if isinstance(iso, int) and not isinstance(iso, bool) and 0 <= iso < 8:
        return iso
    raise ConfigurationError(f"an isometry is a name from {ISOMETRY_NAMES} or a number 0-7, got {iso!r}")


def apply_isometry(block: torch.Tensor, iso: int) -> torch.Tensor:
    """Apply isometry ``iso`` (0-7) to the last two dimensions of ``block``."""
    if iso >= 4:
        block = torch.flip(block, dims=(-1,))
    return torch.rot90(block, k=iso % 4, dims=(-2, -1))


def isometry_swaps_axes(iso: int) -> bool:
    """Whether the isometry transposes height and width (odd quarter turns)."""
    return iso % 2 == 1


@dataclass(frozen=True)
class RangeGrid:
    """Non-overlapping ``rh×rw`` range cells tiling an ``H×W`` image, numbered row-major."""

    image_size: tuple[int, int]
    cell_size: tuple[int, int]

    @property
    def grid(self) -> tuple[int, int]:
        return (self.image_size[0] // self.cell_size[0], self.image_size[1] // self.cell_size[1])

    @property
    def count(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def origins(self) -> list[tuple[int, int]]:
        """Top-left corner of every range cell at scale 1, in range order."""
        rh, rw = self.cell_size
        rows, cols = self.grid
        return [(i * rh, j * rw) for i in range(rows) for j in range(cols)]


@dataclass(frozen=True)
class DomainLattice:
    """Domain cells of one size laid on a lattice with a given stride (overlap allowed)."""

    image_size: tuple[int, int]
    cell_size: tuple[int, int]
    stride: tuple[int, int]
    range_size: tuple[int, int]

    @property
    def pool(self) -> tuple[int, int]:
        """Average-pooling factor that brings a domain cell down to a range cell (scale-free)."""
        return (self.cell_size[0] // self.range_size[0], self.cell_size[1] // self.range_size[1])

    @property
    def grid(self) -> tuple[int, int]:
        (H, W), (dh, dw), (sh, sw) = self.image_size, self.cell_size, self.stride
        return ((H - dh) // sh + 1, (W - dw) // sw + 1)

    @property
    def count(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def origins(self) -> list[tuple[int, int]]:
        """Top-left corner of every domain cell at scale 1, row-major."""
        rows, cols = self.grid
        sh, sw = self.stride
        return [(i * sh, j * sw) for i in range(rows) for j in range(cols)]

    def origin_table(self) -> torch.Tensor:
        """:meth:`origins` as an ``(N, 2)`` int64 tensor (built without a Python loop)."""
        rows, cols = (max(0, n) for n in self.grid)
        i = torch.arange(rows).repeat_interleave(cols) * self.stride[0]
        j = torch.arange(cols).repeat(rows) * self.stride[1]
        return torch.stack([i, j], dim=1)

    def pooled_stride(self, scale: int) -> tuple[int, int]:
        """Stride of the pooled buffer at ``scale``.

        Every pooled pixel a domain reads starts at ``scale·origin + i·pool``; the gcd of the pool
        factor and all scaled origins is the coarsest pooling stride that still contains them, so
        aligned lattices (the usual case) pool with stride = kernel and overlapping ones stay exact.
        """
        rows, cols = self.grid
        step_h = reduce(math.gcd, (scale * self.stride[0] * i for i in range(rows)), 0)
        step_w = reduce(math.gcd, (scale * self.stride[1] * j for j in range(cols)), 0)
        return (math.gcd(self.pool[0], step_h), math.gcd(self.pool[1], step_w))


@dataclass(frozen=True)
class CandidateInfo:
    """What candidate ``index`` of an operator is: a domain cell under an isometry, or an aux patch."""

    index: int
    kind: str  # "domain" or "aux"
    lattice: int | None = None  # which domain lattice (multi-scale), for kind == "domain"
    origin: tuple[int, int] | None = None  # top-left corner at scale 1
    cell_size: tuple[int, int] | None = None
    isometry: str | None = None
    aux_index: int | None = None


@dataclass
class CandidateTables:
    """Integer tables for one scale.

    ``buffer_shapes[g]`` is the pooled-image shape of lattice ``g`` and ``buffer_offsets[g]`` its
    start in the flat buffer; auxiliary patches follow at ``aux_offset``. The ``P`` buffer
    positions of candidate ``d`` (isometry applied, raster order of a range cell at this scale)
    are computed on demand by :meth:`rows`, so memory does not grow with the number of
    candidates: a domain's row is its start position plus a per-(lattice, isometry) block of
    local offsets.
    """

    scale: int
    num_isometries: int
    pool_kernels: list[tuple[int, int]]
    pool_strides: list[tuple[int, int]]
    buffer_shapes: list[tuple[int, int]]
    buffer_offsets: list[int]
    aux_offset: int
    num_aux: int
    buffer_length: int
    domain_starts: torch.Tensor  # (Nd,) int64: buffer position of each domain's first pooled pixel
    domain_lattice: torch.Tensor  # (Nd,) int64: lattice of each domain
    local_offsets: torch.Tensor  # (G, n_iso, P) int64: pixel offsets within a domain's pooled block
    range_grid_shape: tuple[int, int]  # (rows, cols) of range cells
    range_cell: tuple[int, int]  # (s·rh, s·rw): a range cell at this scale

    @property
    def range_pixel_order(self) -> torch.Tensor:
        """``(sH·sW,)`` int64: image raster position -> (range, pixel) slot, for writing ranges back.

        Computed on demand (8 bytes per output pixel: not worth keeping for every level of a
        quadtree); :meth:`subset_positions` gives a range subset's positions without it.
        """
        (rows, cols), (ph, pw) = self.range_grid_shape, self.range_cell
        device = self.domain_starts.device
        yy = torch.arange(rows * ph, device=device)[:, None]
        xx = torch.arange(cols * pw, device=device)[None, :]
        range_id = (yy // ph) * cols + (xx // pw)
        pixel_id = (yy % ph) * pw + (xx % pw)
        return (range_id * (ph * pw) + pixel_id).reshape(-1)

    def subset_positions(self, ranges: torch.Tensor) -> torch.Tensor:
        """Raster positions ``(len(ranges)·P,)`` of the pixels of ``ranges``, range by range, each in raster order."""
        cols, (ph, pw) = self.range_grid_shape[1], self.range_cell
        ry, rx = ranges // cols, ranges % cols
        i = torch.arange(ph, device=ranges.device).repeat_interleave(pw)
        j = torch.arange(pw, device=ranges.device).repeat(ph)
        return ((ry[:, None] * ph + i) * (cols * pw) + rx[:, None] * pw + j).reshape(-1)

    @property
    def num_domains(self) -> int:
        return self.domain_starts.shape[0]

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Buffer positions ``(..., P)`` of the candidates ``index`` (any shape, int64, valid)."""
        P = self.local_offsets.shape[-1]
        n_dom = self.num_domains * self.num_isometries
        is_aux = index >= n_dom
        if n_dom == 0:
            out = torch.zeros(*index.shape, P, dtype=torch.long, device=index.device)
        else:
            dom_index = torch.where(is_aux, torch.zeros_like(index), index)
            domain, iso = dom_index // self.num_isometries, dom_index % self.num_isometries
            out = self.domain_starts[domain].unsqueeze(-1) + self.local_offsets[self.domain_lattice[domain], iso]
        if self.num_aux:
            aux_rows = self.aux_offset + (index - n_dom).clamp(min=0).unsqueeze(-1) * P + torch.arange(P, device=index.device)
            out = torch.where(is_aux.unsqueeze(-1), aux_rows, out)
        return out

    def to(self, device) -> "CandidateTables":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return CandidateTables(**moved)


def build_candidate_tables(
    lattices: list[DomainLattice],
    isometries: list[int],
    range_grid: RangeGrid,
    num_aux: int,
    scale: int,
) -> CandidateTables:
    """Index tables of every candidate at ``scale`` (see :class:`CandidateTables`)."""
    rh, rw = range_grid.cell_size
    ph, pw = scale * rh, scale * rw
    P = ph * pw
    H, W = range_grid.image_size
    sH, sW = scale * H, scale * W
    pool_kernels, pool_strides, shapes, offsets = [], [], [], []
    starts, lattice_ids, locals_ = [], [], []
    offset = 0
    for g, lattice in enumerate(lattices):
        ah, aw = lattice.pool
        th, tw = lattice.pooled_stride(scale)
        bh, bw = (sH - ah) // th + 1, (sW - aw) // tw + 1
        pool_kernels.append((ah, aw))
        pool_strides.append((th, tw))
        shapes.append((bh, bw))
        offsets.append(offset)
        # Pooled pixel (i, j) of a domain with scaled origin (y, x) sits at buffer row
        # (y + i·ah) / th and column (x + j·aw) / tw; both divisions are exact by construction.
        rows = torch.arange(ph) * (ah // th)
        cols = torch.arange(pw) * (aw // tw)
        local = rows[:, None] * bw + cols[None, :]  # (ph, pw)
        locals_.append(torch.stack([apply_isometry(local, iso).reshape(P) for iso in isometries]))
        origins = lattice.origin_table() * scale
        starts.append((origins[:, 0] // th) * bw + origins[:, 1] // tw + offset)
        lattice_ids.append(torch.full((len(origins),), g, dtype=torch.long))
        offset += bh * bw
    aux_offset = offset
    offset += num_aux * P
    n_iso = max(1, len(isometries))
    local_offsets = torch.stack(locals_) if locals_ else torch.zeros(0, n_iso, P, dtype=torch.long)

    empty = torch.zeros(0, dtype=torch.long)
    return CandidateTables(
        scale=scale,
        num_isometries=n_iso,
        pool_kernels=pool_kernels,
        pool_strides=pool_strides,
        buffer_shapes=shapes,
        buffer_offsets=offsets,
        aux_offset=aux_offset,
        num_aux=num_aux,
        buffer_length=offset,
        domain_starts=torch.cat(starts) if starts else empty,
        domain_lattice=torch.cat(lattice_ids) if lattice_ids else empty,
        local_offsets=local_offsets,
        range_grid_shape=range_grid.grid,
        range_cell=(ph, pw),
    )
