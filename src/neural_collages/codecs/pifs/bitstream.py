"""The PIFS payload: symbol streams of every plane, and their validation when decoding.

Per plane (``y``, or ``y``/``cb``/``cr``): quadtree split flags; the quantised scale of every
leaf, per level; the isometry of every fractal leaf; its domain number, per level; and the DPCM
residual of every leaf's mean (predicted from the coded neighbours above and left,
:func:`~neural_collages.coding.predictors.neighbour_mean_prediction`). All are range-coded by
:mod:`neural_collages.coding.streams`. Decoding treats the streams as hostile: every count and
index is checked before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...coding.predictors import NeighbourMeanGrid
from ...coding.streams import StreamSpec, decode_streams
from ...core.codes import SparseCode
from ...core.quadtree import Quadtree
from ...errors import FormatError
from .analysis import LevelAnalysis, PlaneLayout, level_domain_counts, plane_layouts, usable_levels
from .config import NUM_ISOMETRIES, PifsConfig




def stream_specs(layouts: list[PlaneLayout], config: PifsConfig) -> list[StreamSpec]:
    specs = []
    for layout in layouts:
        qt_ops = level_domain_counts(layout.padded, config)
        p = layout.name
        learnt = "adaptive" if config.adaptive_symbols else "categorical"  # version 5: no stored tables
        specs.append(StreamSpec(f"{p}.split", learnt, 2))
        for level in range(len(config.block_sizes)):
            specs.append(StreamSpec(f"{p}.s{level}", learnt, 2 * config.s_levels + 1, -config.s_levels))
        specs.append(StreamSpec(f"{p}.iso", learnt, NUM_ISOMETRIES))
        for level, count in enumerate(qt_ops):
            # A level whose domains do not fit has no fractal blocks: an empty one-symbol stream.
            specs.append(StreamSpec(f"{p}.dom{level}", "uniform", max(1, count)))
        specs.append(StreamSpec(f"{p}.mean", learnt, 2 * config.mean_levels + 1, -config.mean_levels))
    return specs



@dataclass
class PlaneSymbols:
    tree: Quadtree
    flags: list[int]
    scales: list[list[int]]  # per level, leaves of that level in coding order
    domains: list[list[int]]  # per level, fractal leaves only
    isometries: list[int]  # fractal leaves in coding order
    means: list[int]  # residuals, leaves in coding order
    mean_values: list[int] = field(default_factory=list)  # decoded means, coding order


def plane_symbols(tree: Quadtree, fractal, analyses: list[LevelAnalysis], config: PifsConfig) -> PlaneSymbols:
    """Symbols of a decided quadtree, with closed-loop DPCM of the means (as the decoder will see them).

    The loop runs on plain Python lists (a tensor or array element per leaf costs ~10x more).
    """
    H, W = tree.image_size
    cell = config.block_sizes[-1]
    grid = NeighbourMeanGrid(H, W, cell)
    levels = len(config.block_sizes)
    scales: list[list[int]] = [[] for _ in range(levels)]
    domains: list[list[int]] = [[] for _ in range(levels)]
    isos: list[int] = []
    residuals: list[int] = []
    values: list[int] = []
    step, limit = config.mean_step, config.mean_levels
    quantised = [a.quantised(config)[0].tolist() for a in analyses]
    candidates = [a.candidate.tolist() for a in analyses]
    means = [a.mean.tolist() for a in analyses]
    coded = [f.reshape(-1).tolist() for f in fractal]
    for leaf in tree.leaves:
        n = config.block_sizes[leaf.level]
        r = (leaf.y // n) * (W // n) + leaf.x // n
        if coded[leaf.level][r]:
            q = quantised[leaf.level][r]
            cand = candidates[leaf.level][r]
            domains[leaf.level].append(cand // NUM_ISOMETRIES)
            isos.append(cand % NUM_ISOMETRIES)
        else:
            q = 0
        scales[leaf.level].append(q)
        pred = grid.predict(leaf.y, leaf.x, n)
        residual = min(limit, max(-limit, round((means[leaf.level][r] - pred) / step)))
        value = pred + residual * step
        residuals.append(residual)
        values.append(value)
        grid.set(leaf.y, leaf.x, n, value)
    return PlaneSymbols(tree, tree.split_flags(), scales, domains, isos, residuals, values)



def _max_symbols(layouts: list[PlaneLayout], config: PifsConfig) -> int:
    total = 0
    for layout in layouts:
        blocks = sum((layout.padded[0] // n) * (layout.padded[1] // n) for n in config.block_sizes)
        leaves = (layout.padded[0] // config.block_sizes[-1]) * (layout.padded[1] // config.block_sizes[-1])
        total += blocks + 5 * leaves  # flags + (scale, isometry, domain, mean) per leaf, generous
    return total + 64


@dataclass
class DecodedPlane:
    """One plane of a decoded payload: its geometry, quadtree and the sparse code of every level (None if empty)."""

    layout: PlaneLayout
    tree: Quadtree
    codes: list[SparseCode | None]


def decode_planes(width: int, height: int, channels: int, payload: bytes, config: PifsConfig) -> list[DecodedPlane]:
    """Entropy-decode and validate every plane of a ``width × height`` image with ``channels`` channels."""
    layouts = plane_layouts(width, height, channels, config)
    specs = stream_specs(layouts, config)
    streams = decode_streams(specs, payload, max_symbols=_max_symbols(layouts, config))
    levels = len(config.block_sizes)
    out = []
    for layout in layouts:
        p = layout.name
        tree = Quadtree.from_split_flags(layout.padded, config.block_sizes, streams[f"{p}.split"].tolist())
        usable = usable_levels(layout.padded, config)
        scales = [streams[f"{p}.s{level}"] for level in range(levels)]
        domains = [streams[f"{p}.dom{level}"] for level in range(levels)]
        isos = streams[f"{p}.iso"]
        residuals = streams[f"{p}.mean"]
        if len(residuals) != len(tree.leaves):
            raise FormatError(f"plane {p}: {len(residuals)} means for {len(tree.leaves)} blocks")
        # Means: DPCM in coding order, integer arithmetic.
        H, W = layout.padded
        cell = config.block_sizes[-1]
        grid = NeighbourMeanGrid(H, W, cell)
        means = []
        for leaf, residual in zip(tree.leaves, residuals.tolist()):
            n = config.block_sizes[leaf.level]
            value = grid.predict(leaf.y, leaf.x, n) + residual * config.mean_step
            means.append(value)
            grid.set(leaf.y, leaf.x, n, value)
        # Candidates: walk the leaves in coding order; fractal leaves take the next isometry
        # (one stream for all levels) and the next domain of their level.
        counts = [0] * levels
        for leaf in tree.leaves:
            counts[leaf.level] += 1
        for level in range(levels):
            if len(scales[level]) != counts[level]:
                raise FormatError(f"plane {p}: level {level} has {counts[level]} blocks but {len(scales[level])} scales")
            if not usable[level] and bool((scales[level] != 0).any()):
                raise FormatError(f"plane {p}: level {level} cannot have fractal blocks in a plane this small")
        cands = [[0] * counts[level] for level in range(levels)]
        scale_lists = [s.tolist() for s in scales]
        domain_lists = [d.tolist() for d in domains]
        iso_list = isos.tolist()
        level_pos = [0] * levels
        dom_pos = [0] * levels
        iso_pos = 0
        for leaf in tree.leaves:
            level = leaf.level
            j = level_pos[level]
            level_pos[level] += 1
            if scale_lists[level][j] == 0:
                continue
            if iso_pos >= len(iso_list) or dom_pos[level] >= len(domain_lists[level]):
                raise FormatError(f"plane {p}: more fractal blocks than coded domains or isometries")
            cands[level][j] = domain_lists[level][dom_pos[level]] * NUM_ISOMETRIES + iso_list[iso_pos]
            dom_pos[level] += 1
            iso_pos += 1
        if iso_pos != len(isos) or any(dom_pos[l] != len(domains[l]) for l in range(levels)):
            raise FormatError(f"plane {p}: coded domains or isometries left over")
        leaf_means = [[] for _ in range(levels)]
        for leaf, value in zip(tree.leaves, means):
            leaf_means[leaf.level].append(value)
        sparse = []
        for level in range(levels):
            R = counts[level]
            if R == 0:
                sparse.append(None)
                continue
            index = torch.tensor(cands[level], dtype=torch.long).reshape(1, 1, R, 1)
            q = scales[level].astype(np.float32) * np.float32(config.s_step)
            scale = torch.from_numpy(q).reshape(1, 1, R, 1)
            bias = torch.tensor(leaf_means[level], dtype=torch.float32).reshape(1, 1, R)
            sparse.append(SparseCode(index, scale, bias))
        out.append(DecodedPlane(layout, tree, sparse))
    return out
