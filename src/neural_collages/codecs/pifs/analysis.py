"""The quality-independent part of PIFS encoding: plane geometry and the exact search of every block.

One search serves every quality (:class:`LevelAnalysis` keeps the sums from which the error of
any quantised scale follows), so a sweep over qualities searches an image once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ... import limits
from ...core.quadtree import QuadtreeCollage
from ...core.fast_search import NUM_POSES, ClusterSearchSettings, cluster_affine_matches, pose_permutations
from ...core.search import Progress, best_affine_matches
from ...errors import ConfigurationError
from ...imaging.colour import downsample_2x, rgb_to_ycbcr
from ...imaging.tensors import pad_to_multiple
from .config import PifsConfig


@dataclass(frozen=True)
class PlaneLayout:
    """A plane's true size and its size padded to whole root blocks."""

    name: str
    size: tuple[int, int]
    padded: tuple[int, int]


def plane_layouts(width: int, height: int, channels: int, config: PifsConfig) -> list[PlaneLayout]:
    top = config.block_sizes[0]

    def padded(h: int, w: int) -> tuple[int, int]:
        return (-(-h // top) * top, -(-w // top) * top)

    if channels == 1:
        return [PlaneLayout("y", (height, width), padded(height, width))]
    even = (height + height % 2, width + width % 2)
    half = (even[0] // 2, even[1] // 2)
    return [
        PlaneLayout("y", even, padded(*even)),
        PlaneLayout("cb", half, padded(*half)),
        PlaneLayout("cr", half, padded(*half)),
    ]


def level_domain_counts(size: tuple[int, int], config: PifsConfig) -> list[int]:
    H, W = size
    return [
        ((H - 2 * n) // st + 1) * ((W - 2 * n) // st + 1) if 2 * n <= min(H, W) else 0
        for n, st in zip(config.block_sizes, config.domain_strides)
    ]


def usable_levels(size: tuple[int, int], config: PifsConfig) -> list[bool]:
    """A level can code fractal blocks only if its 2n domains fit in the plane."""
    return [count > 0 for count in level_domain_counts(size, config)]



@dataclass
class LevelAnalysis:
    """Best fractal fit of every block of one level (before quantisation), and its flat alternative.

    The fit's error for any quantised scale ``s`` is ``syy − 2 s·sxy + s²·sxx``, so one search
    serves every quantisation (:meth:`quantised`).
    """

    mean: torch.Tensor  # (R,) block means
    scale: torch.Tensor  # (R,) optimal clamped scale of the best candidate (0 where not searched)
    candidate: torch.Tensor  # (R,) candidate number (domain · 8 + isometry)
    syy: torch.Tensor  # (R,) squared error of the mean alone (the flat leaf)
    sxy: torch.Tensor  # (R,) centred cross product with the chosen candidate
    sxx: torch.Tensor  # (R,) centred energy of the chosen candidate
    num_domains: int

    def quantised(self, config: "PifsConfig") -> tuple[torch.Tensor, torch.Tensor]:
        """Scale levels ``q`` (0 = flat) and the squared error of the quantised fit."""
        q = torch.round(self.scale / config.s_step).clamp(-config.s_levels, config.s_levels)
        s = q * config.s_step
        err = (self.syy - 2 * s * self.sxy + s * s * self.sxx).clamp(min=0)
        return q.long(), err


#: Range searches: every candidate of the plane, or a short list from an index (``--search fast``).
SEARCHES = ("exhaustive", "fast")
#: The fast search cuts planes larger than this (per side, px) into range tiles of
#: ``FAST_TILE`` px that search domains within ``FAST_MARGIN`` px around them, so its cost per
#: pixel does not grow with the image; a Kodak image (768×512) is one window.
FAST_WINDOW = 1024
FAST_TILE = 768
FAST_MARGIN = 128
#: How hard the fast search looks in each window.
FAST_SETTINGS = ClusterSearchSettings()


def analyse_plane(plane: torch.Tensor, qt: QuadtreeCollage, config: PifsConfig,
                  progress: Progress | None = None, search: str = "exhaustive") -> list[LevelAnalysis]:
    """Search every level of the quadtree for one padded plane ``(H, W)`` in 8-bit units."""
    if search not in SEARCHES:
        raise ConfigurationError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    match = exhaustive_match if search == "exhaustive" else cluster_match
    if search == "fast" and max(plane.shape) > FAST_WINDOW:
        return _analyse_windows(plane, qt, config, match, progress)
    return [_analyse_level(plane, op, usable, config, match, progress)
            for op, usable in zip(qt.operators, usable_levels(plane.shape, config))]


def exhaustive_match(op, x, ranges, s_max, progress):
    """Every candidate of ``op`` scored: ``(candidate, scale, chosen candidate blocks)``."""
    cands = op.candidates(x)[0, 0].detach()
    idx, s, _ = best_affine_matches(ranges, cands, s_max, progress=progress)
    return idx, s, cands[idx]


def cluster_match(op, x, ranges, s_max, progress):
    """:func:`~neural_collages.core.fast_search.cluster_affine_matches` on ``op``'s domains, with
    its (domain, isometry) pairs as ``op``'s candidate numbers."""
    if op.isometries != list(range(NUM_POSES)) or op.num_aux:
        return exhaustive_match(op, x, ranges, s_max, progress)
    cells = op.domain_cells(x)[0, 0].detach()
    domain, iso, s, _ = cluster_affine_matches(ranges, cells, s_max, FAST_SETTINGS, progress=progress)
    perm = pose_permutations(op.range_size[0])[0]
    return domain * NUM_POSES + iso, s, cells[domain].gather(1, perm[iso])


def _analyse_level(plane, op, usable: bool, config: PifsConfig, match, progress, rows=None) -> LevelAnalysis:
    """One level's blocks (all, or the range ids ``rows``): means, flat errors and best fits."""
    x = plane.reshape(1, 1, *plane.shape)
    ranges = op.ranges(x)[0, 0]
    if rows is not None:
        ranges = ranges[rows]
    mean = ranges.mean(dim=-1)
    centred = ranges - mean[:, None]
    syy = centred.pow(2).sum(-1)
    R, P = centred.shape
    scale = torch.zeros(R, dtype=centred.dtype)
    candidate = torch.zeros(R, dtype=torch.long)
    sxy = torch.zeros(R, dtype=centred.dtype)
    sxx = torch.zeros(R, dtype=centred.dtype)
    active = (syy > config.flat_variance * P).nonzero()[:, 0] if usable else torch.zeros(0, dtype=torch.long)
    if active.numel():
        idx, s, chosen = match(op, x, centred[active], config.s_max, progress)
        scale[active], candidate[active] = s, idx
        sxy[active] = (centred[active] * chosen).sum(-1)
        sxx[active] = chosen.pow(2).sum(-1)
        del chosen
    if progress is not None:
        progress(R - active.numel())
    return LevelAnalysis(mean, scale, candidate, syy, sxy, sxx, op.num_domains)


def _spans(size: int) -> list[tuple[int, int, int, int]]:
    """Along one side: (range start, range end, window start, window end) per tile."""
    if size <= FAST_WINDOW:
        return [(0, size, 0, size)]
    return [(a, min(a + FAST_TILE, size), max(0, a - FAST_MARGIN), min(size, a + FAST_TILE + FAST_MARGIN))
            for a in range(0, size, FAST_TILE)]


def _analyse_windows(plane, qt: QuadtreeCollage, config: PifsConfig, match, progress) -> list[LevelAnalysis]:
    """The fast search of a large plane, window by window; candidate numbers are the plane's."""
    H, W = plane.shape
    usable = usable_levels(plane.shape, config)
    out = []
    for op, n in zip(qt.operators, config.block_sizes):
        R = (H // n) * (W // n)
        out.append(LevelAnalysis(torch.zeros(R), torch.zeros(R), torch.zeros(R, dtype=torch.long), torch.zeros(R),
                                 torch.zeros(R), torch.zeros(R), op.num_domains))
    windows: dict[tuple[int, int], QuadtreeCollage] = {}
    for ry0, ry1, wy0, wy1 in _spans(H):
        for rx0, rx1, wx0, wx1 in _spans(W):
            size = (wy1 - wy0, wx1 - wx0)
            local = windows.setdefault(size, QuadtreeCollage(size, config.block_sizes, config.domain_strides))
            sub = plane[wy0:wy1, wx0:wx1]
            for level, (op, n) in enumerate(zip(local.operators, config.block_sizes)):
                rows = _block_ids(ry0 - wy0, ry1 - wy0, rx0 - wx0, rx1 - wx0, n, size[1])
                part = _analyse_level(sub, op, usable[level], config, match, progress, rows)
                target = _block_ids(ry0, ry1, rx0, rx1, n, W)
                whole = out[level]
                for name in ("mean", "scale", "syy", "sxy", "sxx"):
                    getattr(whole, name)[target] = getattr(part, name)
                whole.candidate[target] = _global_candidates(part.candidate, op, qt.operators[level],
                                                             (wy0, wx0))
    return out


def _block_ids(y0: int, y1: int, x0: int, x1: int, n: int, width: int) -> torch.Tensor:
    """Raster ids of the ``n``-px blocks in ``[y0, y1) × [x0, x1)`` of an image ``width`` px wide."""
    rows, cols = torch.arange(y0 // n, y1 // n), torch.arange(x0 // n, x1 // n)
    return (rows[:, None] * (width // n) + cols[None, :]).reshape(-1)


def _global_candidates(local: torch.Tensor, window_op, plane_op, origin: tuple[int, int]) -> torch.Tensor:
    """Candidate numbers of a window's level operator as numbers of the whole plane's."""
    isometries = len(plane_op.isometries)
    lcols, gcols = window_op.lattices[0].grid[1], plane_op.lattices[0].grid[1]
    sy, sx = plane_op.lattices[0].stride
    domain, iso = local // isometries, local % isometries
    i, j = domain // lcols, domain % lcols
    return ((i + origin[0] // sy) * gcols + (j + origin[1] // sx)) * isometries + iso


def image_planes(image: torch.Tensor, layouts: list[PlaneLayout]) -> list[torch.Tensor]:
    """Float planes in 8-bit units, padded to whole root blocks."""
    x = image.to(torch.float32) * 255.0
    if len(layouts) == 1:
        planes = [x[0]]
    else:
        even = layouts[0].size
        x, _ = pad_to_multiple(x.unsqueeze(0), 2)
        ycc = rgb_to_ycbcr(x[0])
        planes = [ycc[0], downsample_2x(ycc[1]), downsample_2x(ycc[2])]
        assert planes[0].shape == even
    out = []
    for plane, layout in zip(planes, layouts):
        padded, _ = pad_to_multiple(plane.reshape(1, 1, *plane.shape), tuple(
            layout.padded[i] if layout.padded[i] > plane.shape[i] else plane.shape[i] for i in range(2)))
        out.append(padded[0, 0, : layout.padded[0], : layout.padded[1]].contiguous())
    return out



def count_blocks(width: int, height: int, channels: int, config: PifsConfig) -> int:
    """Blocks :func:`analyse` visits (over every plane and level): the length of its progress."""
    layouts = plane_layouts(width, height, channels, config)
    return sum(sum((l.padded[0] // n) * (l.padded[1] // n) for n in config.block_sizes) for l in layouts)


def analyse(image: torch.Tensor, config: PifsConfig, progress: Progress | None = None,
            search: str = "exhaustive") -> list[list[LevelAnalysis]]:
    """The quality-independent part of encoding: the exact search of every plane and level.

    :func:`~neural_collages.codecs.pifs.codec.encode_analysed` turns it into a file for any
    quality with the same geometry, so a sweep over qualities searches once. ``progress`` is
    called with the number of blocks done (:func:`count_blocks` in all).
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ConfigurationError("expected an image tensor of shape (1 or 3, H, W)")
    C, H, W = image.shape
    if H * W > limits.MAX_PIXELS or min(H, W) < 1 or max(H, W) > 65535:
        raise ConfigurationError(f"image size {W}x{H} is outside what the codec handles")
    layouts = plane_layouts(W, H, C, config)
    planes = image_planes(image.clamp(0, 1), layouts)
    analyses = []
    with torch.no_grad():
        for plane, layout in zip(planes, layouts):
            qt = QuadtreeCollage(layout.padded, config.block_sizes, config.domain_strides)
            analyses.append(analyse_plane(plane, qt, config, progress=progress, search=search))
    return analyses
