"""PIFS rate–distortion decisions: per block fractal or flat, per quadtree node leaf or split.

Costs are ``D + λ·R`` with ``D`` the squared error in 8-bit units and ``R`` approximate bits from
a :class:`RateModel`, itself re-estimated from the symbols of a first pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...core.quadtree import Quadtree
from .analysis import LevelAnalysis
from .bitstream import PlaneSymbols
from .config import NUM_ISOMETRIES
from .config import PifsConfig


@dataclass
class RateModel:
    """Approximate bit costs for the rate–distortion decisions."""

    scale_bits: list[torch.Tensor]  # per level: bits of each quantised-scale symbol (index q + s_levels)
    iso_bits: float = 3.0
    mean_bits: float = 4.0
    flag_bits: float = 1.0

    @classmethod
    def initial(cls, config: PifsConfig) -> "RateModel":
        bits = torch.full((2 * config.s_levels + 1,), 5.0)
        bits[config.s_levels] = 1.5
        return cls([bits.clone() for _ in config.block_sizes])


def _bits_from_counts(counts: np.ndarray, floor: float = 0.5) -> torch.Tensor:
    total = counts.sum()
    if total == 0:
        return torch.full((len(counts),), 8.0)
    probs = (counts + floor) / (total + floor * len(counts))
    return torch.from_numpy(-np.log2(probs)).float()


def decide_quadtree(
    analyses: list[LevelAnalysis], size: tuple[int, int], config: PifsConfig, lam: float, rates: RateModel
):
    """Bottom-up RD pruning. Returns the tree and, per level, whether each block is coded fractal."""
    levels = len(config.block_sizes)
    H, W = size
    fractal = []
    leaf_cost = []
    for level, a in enumerate(analyses):
        n = config.block_sizes[level]
        q, err_fractal = a.quantised(config)
        sym = q + config.s_levels
        dom_bits = math.log2(a.num_domains) if a.num_domains > 1 else 0.0
        j_fractal = err_fractal + lam * (rates.scale_bits[level][sym] + rates.iso_bits + dom_bits + rates.mean_bits)
        j_flat = a.syy + lam * (rates.scale_bits[level][config.s_levels] + rates.mean_bits)
        use = (q != 0) & (j_fractal < j_flat)
        cost = torch.where(use, j_fractal, j_flat)
        if level < levels - 1:
            cost = cost + lam * rates.flag_bits
        fractal.append(use.reshape(H // n, W // n))
        leaf_cost.append(cost.reshape(H // n, W // n))
    split = [None] * levels
    best = leaf_cost[-1]
    for level in range(levels - 2, -1, -1):
        h, w = leaf_cost[level].shape
        children = best.reshape(h, 2, w, 2).sum(dim=(1, 3)) + lam * rates.flag_bits
        split[level] = children < leaf_cost[level]
        best = torch.where(split[level], children, leaf_cost[level])
    split_rows = [s.tolist() if s is not None else None for s in split]  # lists: read once per node

    def do_split(level: int, y: int, x: int) -> bool:
        n = config.block_sizes[level]
        return split_rows[level][y // n][x // n]

    tree = Quadtree.from_split(size, config.block_sizes, do_split)
    return tree, fractal



def rates_from_symbols(symbols: list[PlaneSymbols], config: PifsConfig) -> RateModel:
    levels = len(config.block_sizes)
    k = 2 * config.s_levels + 1
    scale_bits = []
    for level in range(levels):
        counts = np.zeros(k)
        for s in symbols:
            np.add.at(counts, np.asarray(s.scales[level], dtype=np.int64) + config.s_levels, 1)
        scale_bits.append(_bits_from_counts(counts))
    mean_counts = np.zeros(2 * config.mean_levels + 1)
    iso_counts = np.zeros(NUM_ISOMETRIES)
    flags = np.zeros(2)
    for s in symbols:
        np.add.at(mean_counts, np.asarray(s.means, dtype=np.int64) + config.mean_levels, 1)
        np.add.at(iso_counts, np.asarray(s.isometries, dtype=np.int64), 1)
        np.add.at(flags, np.asarray(s.flags, dtype=np.int64), 1)
    p_mean = mean_counts / max(1.0, mean_counts.sum())
    mean_bits = float(-(p_mean[p_mean > 0] * np.log2(p_mean[p_mean > 0])).sum()) if mean_counts.sum() else 4.0
    p_iso = iso_counts / max(1.0, iso_counts.sum())
    iso_bits = float(-(p_iso[p_iso > 0] * np.log2(p_iso[p_iso > 0])).sum()) if iso_counts.sum() else 3.0
    p_flag = flags / max(1.0, flags.sum())
    flag_bits = float(-(p_flag[p_flag > 0] * np.log2(p_flag[p_flag > 0])).sum()) if flags.sum() else 1.0
    return RateModel(scale_bits, iso_bits=iso_bits, mean_bits=max(mean_bits, 0.5), flag_bits=max(flag_bits, 0.2))
