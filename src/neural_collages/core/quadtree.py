"""Quadtree partitions, and collage operators over them.

A quadtree cuts an image (whose sides are multiples of the largest block) into square leaves of
sizes ``block_sizes[0] > block_sizes[1] > …``, each half the previous. :class:`QuadtreeCollage`
decodes a code on such a partition through one :class:`CollageOperator` per block size, each
restricted to its own leaves (range subsets), so classic variable-block fractal codes use the
same operator, the same any-scale decoding and the same solvers as everything else.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .codes import SparseCode
from ..errors import ConfigurationError, FormatError
from .operator import CollageOperator
from .partitions import ISOMETRY_NAMES
from .solvers import DecodeStats, picard


#: Output pixels up to which a decode keeps its gather indices for all steps (~20 bytes each).
PREPARED_PIXELS = 1 << 22
#: Output pixels per chunk when larger decodes rebuild their indices every step.
CHUNK_PIXELS = 1 << 20


def _check_block_sizes(block_sizes) -> tuple[int, ...]:
    sizes = tuple(int(b) for b in block_sizes)
    if not sizes or any(b < 1 for b in sizes):
        raise ConfigurationError(f"block sizes must be positive, got {block_sizes!r}")
    if any(sizes[i] != 2 * sizes[i + 1] for i in range(len(sizes) - 1)):
        raise ConfigurationError(f"block sizes must halve from one level to the next, got {block_sizes!r}")
    return sizes


class Leaf(NamedTuple):
    """A quadtree leaf: its level (index into ``block_sizes``) and top-left corner in pixels.
    (A named tuple: coders build one per block, several times faster than a frozen dataclass.)"""

    level: int
    y: int
    x: int


class Quadtree:
    """A quadtree partition of an ``H×W`` image (sides multiples of ``block_sizes[0]``).

    Leaves are kept in coding order: root blocks in raster order, and inside each root the
    depth-first Z order (top-left, top-right, bottom-left, bottom-right). In that order every
    pixel directly above or to the left of a leaf belongs to an earlier leaf, which is what
    causal prediction (e.g. of block means) needs.
    """

    def __init__(self, image_size: tuple[int, int], block_sizes, leaves: list[Leaf]):
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.block_sizes = _check_block_sizes(block_sizes)
        top = self.block_sizes[0]
        if self.image_size[0] % top or self.image_size[1] % top or min(self.image_size) < 1:
            raise ConfigurationError(f"image size {self.image_size} is not a multiple of the {top}px root blocks")
        self.leaves = list(leaves)

    @property
    def levels(self) -> int:
        return len(self.block_sizes)

    def root_origins(self) -> list[tuple[int, int]]:
        top = self.block_sizes[0]
        H, W = self.image_size
        return [(y, x) for y in range(0, H, top) for x in range(0, W, top)]

    @classmethod
    def from_split(cls, image_size, block_sizes, split) -> "Quadtree":
        """Build from a predicate ``split(level, y, x) -> bool`` (ignored at the last level)."""
        block_sizes = _check_block_sizes(block_sizes)
        tree = cls(image_size, block_sizes, [])

        def visit(level: int, y: int, x: int) -> None:
            if level < len(block_sizes) - 1 and split(level, y, x):
                half = block_sizes[level + 1]
                for dy, dx in ((0, 0), (0, half), (half, 0), (half, half)):
                    visit(level + 1, y + dy, x + dx)
            else:
                tree.leaves.append(Leaf(level, y, x))

        for y, x in tree.root_origins():
            visit(0, y, x)
        return tree

    def split_flags(self) -> list[int]:
        """One flag per node above the last level, in coding order: 1 = split, 0 = leaf."""
        leaf_set = {(l.level, l.y, l.x) for l in self.leaves}
        flags: list[int] = []

        def visit(level: int, y: int, x: int) -> None:
            if level == self.levels - 1:
                return
            if (level, y, x) in leaf_set:
                flags.append(0)
                return
            flags.append(1)
            half = self.block_sizes[level + 1]
            for dy, dx in ((0, 0), (0, half), (half, 0), (half, half)):
                visit(level + 1, y + dy, x + dx)

        for y, x in self.root_origins():
            visit(0, y, x)
        return flags

    @classmethod
    def from_split_flags(cls, image_size, block_sizes, flags) -> "Quadtree":
        """Inverse of :meth:`split_flags`; raises :class:`FormatError` if the flags do not fit exactly."""
        flags = list(flags)
        position = 0

        def split(level: int, y: int, x: int) -> bool:
            nonlocal position
            if position >= len(flags):
                raise FormatError("quadtree split flags end early")
            value = flags[position]
            position += 1
            if value not in (0, 1):
                raise FormatError(f"invalid quadtree split flag {value}")
            return value == 1

        tree = cls.from_split(image_size, block_sizes, split)
        if position != len(flags):
            raise FormatError(f"{len(flags) - position} quadtree split flags left over")
        return tree

    def leaf_range_ids(self, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For the leaves at ``level``: their positions in coding order and their range numbers
        in the row-major grid of that level's block size."""
        n = self.block_sizes[level]
        cols = self.image_size[1] // n
        order = [i for i, leaf in enumerate(self.leaves) if leaf.level == level]
        ids = [(self.leaves[i].y // n) * cols + self.leaves[i].x // n for i in order]
        return torch.tensor(order, dtype=torch.long), torch.tensor(ids, dtype=torch.long)


class QuadtreeCollage:
    """Single-channel collage operators on a quadtree: one :class:`CollageOperator` per block size.

    Level ``l`` has ``n×n`` range cells, ``2n×2n`` domain cells on a lattice of stride
    ``domain_strides[l]`` and the given isometries (see :attr:`usable` for images smaller than
    the domains); ``centred=True`` uses mean-removed maps (a
    leaf's bias is its mean). Candidate numbers are the level operator's.
    """

    def __init__(self, image_size, block_sizes, domain_strides=None, isometries=ISOMETRY_NAMES, centred=True):
        self.block_sizes = _check_block_sizes(block_sizes)
        if domain_strides is None:
            domain_strides = [max(1, n // 2) for n in self.block_sizes]
        if len(domain_strides) != len(self.block_sizes):
            raise ConfigurationError("give one domain stride per block size")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        H, W = self.image_size
        #: Whether a level's 2n×2n domains fit in the image. Levels where they do not can only
        #: hold flat blocks; their operator uses the whole image as its one (unused) domain.
        self.usable = [2 * n <= min(H, W) for n in self.block_sizes]
        self.operators = [
            CollageOperator(self.image_size, channels=1, range_size=n,
                            domain_size=(2 * n, 2 * n) if fits else (H, W), domain_stride=stride,
                            isometries=isometries, centred=centred)
            for n, stride, fits in zip(self.block_sizes, domain_strides, self.usable)
        ]

    def decode(
        self,
        tree: Quadtree,
        codes: list[SparseCode | None],
        scale: int = 1,
        steps: int = 16,
        tol: float = 0.0,
        init: torch.Tensor | None = None,
        return_trajectory: bool = False,
    ) -> tuple[torch.Tensor, DecodeStats]:
        """Iterate the quadtree operator: ``codes[l]`` holds the leaves of level ``l`` in the
        order of :meth:`Quadtree.leaf_range_ids` (``None`` where a level has no leaves)."""
        if tree.image_size != self.image_size or tree.block_sizes != self.block_sizes:
            raise ConfigurationError("the quadtree does not match this operator's image size and block sizes")
        if len(codes) != len(self.operators):
            raise ConfigurationError(f"expected one code per level ({len(self.operators)}), got {len(codes)}")
        levels = []
        dtype = None
        for level, (op, code) in enumerate(zip(self.operators, codes)):
            _, ids = tree.leaf_range_ids(level)
            if code is None:
                if ids.numel():
                    raise ConfigurationError(f"level {level} has leaves but no code")
                continue
            op.validate_code(code, ids)
            levels.append((op, code, ids))
            dtype = code.bias.dtype
        H, W = self.image_size
        owned = init is None  # a start we made may be overwritten: two image buffers, not three
        if owned:
            init = torch.zeros(1, 1, scale * H, scale * W, dtype=dtype or torch.float32)
        # Gather indices cost ~20 bytes per output pixel. Up to PREPARED_PIXELS they are built
        # once; beyond, they are rebuilt every step in chunks of CHUNK_PIXELS, so memory stays
        # a few image copies whatever the size (measured: ~2x the time per step). Both paths do
        # the same arithmetic per pixel: the output is bit-identical.
        whole = scale * scale * H * W <= PREPARED_PIXELS
        if whole:
            prepared = [(op, op.prepare(code, scale, ranges=ids)) for op, code, ids in levels]

        def step(z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
            out = torch.empty_like(z) if out is None else out
            if whole:
                for op, prep in prepared:
                    out = op.apply_prepared(z, prep, out=out)
                return out
            for op, code, ids in levels:
                buffer = op.pooled_buffer(z, scale)
                means = op.domain_means(buffer, scale) if op.centred else None
                per_chunk = max(1, CHUNK_PIXELS // op.range_pixels(scale))
                for a in range(0, ids.numel(), per_chunk):
                    part = SparseCode(code.index[:, :, a : a + per_chunk], code.scale[:, :, a : a + per_chunk],
                                      code.bias[:, :, a : a + per_chunk])
                    prep = op.prepare(part, scale, ranges=ids[a : a + per_chunk])
                    out = op.apply_prepared(z, prep, out=out, buffer=buffer, means=means)
            return out

        return picard(step, init, tol, steps, trajectory=return_trajectory, step_into=step if owned else None)
