"""The encoder of the PIFS residual layer (format and decoder: :mod:`.residual`).

The DCT of ``target − fractal decode`` and the fractal decode's block activities do not depend on
the quantisation step, so :class:`ResidualSource` computes them once per fractal decode and
:func:`encode_residual` codes them at any steps. Levels are quantised with a dead zone, then
rate–distortion optimised (:func:`rd_optimise`) under the tables the file will carry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ...coding import table_coding
from .residual import (BLOCK, DECAY_LEVELS, MAX_LEVEL, NONZERO_COUNTS, NUM_BANDS, NUM_CLASSES, ResidualSteps,
                       block_activity, block_dct, classes_from_activity, coefficient_contexts, context_tables,
                       flag_pmf, frequency_tables, magnitude_pmf, plane_groups, rebuild_blocks)

_COUNTS = np.asarray(NONZERO_COUNTS, dtype=np.float64)
NUM_CONTEXTS = NUM_CLASSES * NUM_BANDS


def _fit_nonzero(count_nonzero: int, total: int) -> int:
    """The index of NONZERO_COUNTS closest (in log) to ``count_nonzero / total``."""
    if total == 0:
        return len(NONZERO_COUNTS) - 1
    target = max(count_nonzero, 0.25) / total * 65536.0
    return int(np.argmin(np.abs(np.log(_COUNTS / target))))


def _fit_decay(magnitude_sum: float, count: int) -> int:
    """Geometric decay index (maximum likelihood, rounded) of ``count`` magnitudes ≥ 1 summing to
    ``magnitude_sum``."""
    if count == 0:
        return 0
    theta = 1.0 - 1.0 / (magnitude_sum / count)  # as 1 − 1/mean, so fits stay what they were
    return int(min(DECAY_LEVELS - 1, max(0, round(theta * DECAY_LEVELS))))


@dataclass
class GroupModel:
    """The fitted tables of one plane group: flag and coefficient parameters per context."""

    flag_params: dict
    coef_params: dict

    @classmethod
    def fit(cls, levels: np.ndarray, classes: np.ndarray) -> "GroupModel":
        """Parameters for ``levels`` ``(n, 64)`` of blocks of ``classes`` ``(n,)``."""
        flags = (levels != 0).any(axis=1)
        return cls.fit_coded(levels[flags], classes[flags], np.bincount(classes, minlength=NUM_CLASSES))

    @classmethod
    def fit_coded(cls, coded: np.ndarray, coded_classes: np.ndarray, blocks_per_class: np.ndarray) -> "GroupModel":
        """Parameters from the levels ``(m, 64)`` of the coded blocks alone (every one with a nonzero
        value), their classes, and the number of blocks (coded or not) of each class."""
        flagged = np.bincount(coded_classes, minlength=NUM_CLASSES)
        flag_params = {a: _fit_nonzero(int(flagged[a]), int(blocks_per_class[a]))
                       for a in np.flatnonzero(blocks_per_class).tolist()}
        contexts = coefficient_contexts(coded_classes)
        values = coded.reshape(-1)
        nonzero = values != 0
        counts = np.bincount(contexts, minlength=NUM_CONTEXTS)
        nz_counts = np.bincount(contexts[nonzero], minlength=NUM_CONTEXTS)
        # Integer magnitudes: the float64 sums are exact, so the fit does not depend on their order.
        nz_sums = np.bincount(contexts[nonzero], weights=np.abs(values[nonzero]), minlength=NUM_CONTEXTS)
        coef_params = {ctx: (_fit_nonzero(int(nz_counts[ctx]), int(counts[ctx])),
                             _fit_decay(float(nz_sums[ctx]), int(nz_counts[ctx])))
                       for ctx in np.flatnonzero(counts).tolist()}
        return cls(flag_params, coef_params)

    def bit_costs(self) -> tuple[np.ndarray, np.ndarray]:
        """Bits of flag 0 and 1 per class ``(NUM_CLASSES, 2)``, and of every value per coefficient
        context ``(contexts, 2·MAX_LEVEL + 1)``, under the coder's quantised tables (contexts
        without a fit: the widest table, so a value there is never free)."""
        flags = np.stack([_flag_bits(self.flag_params.get(a, 0)) for a in range(NUM_CLASSES)])
        values = np.stack([_value_bits(self.coef_params.get(c, (0, DECAY_LEVELS - 1))) for c in range(NUM_CONTEXTS)])
        return flags, values


# Tables are quantised row by row, so one row's bits are those of the same row in any table set.
@functools.lru_cache(maxsize=len(NONZERO_COUNTS))
def _flag_bits(nonzero_index: int) -> np.ndarray:
    return _bits(frequency_tables([flag_pmf(nonzero_index)], 0))[0]


@functools.lru_cache(maxsize=4096)
def _value_bits(params: tuple[int, int]) -> np.ndarray:
    return _bits(frequency_tables([magnitude_pmf(*params)], -MAX_LEVEL))[0]


def _bits(tables) -> np.ndarray:
    return table_coding.PRECISION_BITS - np.log2(tables.counts.astype(np.float64))


def encode_group(levels_per_plane: list[np.ndarray], classes_per_plane: list[np.ndarray]) -> bytes:
    """Code one plane group's quantised coefficients ``(Hb, Wb, 64)`` per plane, given each block's class."""
    levels = np.concatenate([l.reshape(-1, BLOCK * BLOCK) for l in levels_per_plane])
    classes = np.concatenate([c.reshape(-1) for c in classes_per_plane])
    flagged = np.flatnonzero((levels != 0).any(axis=1))
    return _encode_coded(classes, flagged, levels[flagged])


def _encode_coded(classes: np.ndarray, flagged: np.ndarray, coded: np.ndarray) -> bytes:
    """:func:`encode_group` of a group whose blocks (all of them) have ``classes`` and whose blocks
    at the indices ``flagged`` alone have nonzero levels, ``coded`` ``(m, 64)``."""
    flags = np.zeros(classes.size, dtype=np.int64)
    flags[flagged] = 1
    coded_classes = classes[flagged]
    model = GroupModel.fit_coded(coded, coded_classes, np.bincount(classes, minlength=NUM_CLASSES))
    out = bytearray(model.flag_params[a] for a in sorted(model.flag_params))
    out += _code(flags, classes, model.flag_params, NUM_CLASSES, flag_pmf, 0)
    for ctx in sorted(model.coef_params):
        out += bytes(model.coef_params[ctx])
    out += _code(coded.reshape(-1), coefficient_contexts(coded_classes), model.coef_params, NUM_CONTEXTS,
                 lambda p: magnitude_pmf(*p), -MAX_LEVEL)
    return bytes(out)


def _code(values, contexts, params, num_contexts, pmf, offset) -> bytes:
    tables, remap = context_tables(params, num_contexts, pmf, offset)
    if tables is None:
        return bytes([0])  # no symbols: table_coding's empty encoding
    return table_coding.encode(values, remap[contexts], tables)


def rd_optimise(coeffs: np.ndarray, levels: np.ndarray, classes: np.ndarray, step: float, bias: int,
                lam: float, rounds: int = 2) -> np.ndarray:
    """Rate–distortion-optimised levels ``(n, 64)`` of blocks with coefficients ``coeffs`` (8-bit units):
    each nonzero value may move one step towards zero and each block may be dropped, whichever
    lowers ``squared error + lam · bits`` under tables fitted to the current levels."""
    levels = levels.copy()
    # Only blocks with a nonzero level can change; the others count only in the flag tables.
    active = np.flatnonzero((levels != 0).any(axis=1))
    levels[active] = _rd_optimise_active(coeffs[active], levels[active], classes[active],
                                         np.bincount(classes, minlength=NUM_CLASSES), step, bias, lam, rounds)
    return levels


def _rd_optimise_active(c: np.ndarray, q: np.ndarray, cls: np.ndarray, blocks_per_class: np.ndarray, step: float,
                        bias: int, lam: float, rounds: int) -> np.ndarray:
    """:func:`rd_optimise` of the blocks with a nonzero level alone (``c``, ``q``, ``cls``), the
    group counting ``blocks_per_class`` blocks of each class in all."""
    contexts = coefficient_contexts(cls).reshape(-1, BLOCK * BLOCK)

    def recon(v):
        return np.sign(v) * np.maximum(np.abs(v) - bias / 16.0, 0.0) * step

    for _ in range(rounds):
        coded = (q != 0).any(axis=1)
        flag_bits, value_bits = GroupModel.fit_coded(q[coded], cls[coded], blocks_per_class).bit_costs()

        def cost(v):
            return (c - recon(v)) ** 2 + lam * value_bits[contexts, v + MAX_LEVEL]

        lower = q - np.sign(q)
        q = np.where((q != 0) & (cost(lower) < cost(q)), lower, q)
        coded = (q != 0).any(axis=1)
        j_coded = cost(q).sum(axis=1) + lam * flag_bits[cls, 1]
        j_zero = (c ** 2).sum(axis=1) + lam * flag_bits[cls, 0]
        q[coded & (j_zero <= j_coded)] = 0
    return q


def quantise(coeffs: torch.Tensor, step: float, rounding: float) -> np.ndarray:
    """Dead-zone quantisation: ``sign(c)·floor(|c|/step + rounding)``, clipped to ±MAX_LEVEL (int64)."""
    q = torch.floor(coeffs.abs() / step + rounding).clamp(max=MAX_LEVEL) * coeffs.sign()
    return q.to(torch.int64).numpy()


def best_bias(scaled: torch.Tensor, levels: np.ndarray) -> int:
    """The reconstruction offset (sixteenths of a step) that minimises the error of the nonzero
    values, given the coefficients ``scaled`` in units of their step and their ``levels``."""
    q = torch.from_numpy(levels).abs().to(torch.float64)
    nz = q > 0
    if not bool(nz.any()):
        return 0
    b = float((q[nz] - scaled.abs()[nz]).mean())
    return int(min(15, max(0, round(16 * b))))


@dataclass(frozen=True)
class ResidualSource:
    """What a residual layer over one fractal decode codes, at any steps: per plane the DCT
    coefficients ``(Hb·Wb, 64)`` of ``target − fractal`` (8-bit units, float64; blocks wholly in
    the padding zeroed: they are never shown), each block's largest magnitude, the block grid, and
    the fractal decode's block activities."""

    coeffs: list[torch.Tensor]
    block_max: list[torch.Tensor]
    blocks: list[tuple[int, int]]
    activities: list[np.ndarray]

    @classmethod
    def of(cls, targets: list[torch.Tensor], fractal: list[torch.Tensor],
           sizes: list[tuple[int, int]]) -> "ResidualSource":
        """From padded target and (deblocked) fractal planes; ``sizes``: the planes' true sizes."""
        coeffs, grids = [], []
        for target, decoded, (h, w) in zip(targets, fractal, sizes):
            c = block_dct((target - decoded).to(torch.float64))
            c[-(-h // BLOCK):], c[:, -(-w // BLOCK):] = 0.0, 0.0
            grids.append(tuple(c.shape[:2]))
            coeffs.append(c.reshape(-1, BLOCK * BLOCK))
        return cls(coeffs, [c.abs().amax(dim=1) for c in coeffs], grids,
                   [block_activity(decoded).reshape(-1) for decoded in fractal])


def _group(plane: int) -> int:
    """The plane group of plane ``plane`` (0 luma, 1 chroma)."""
    return 0 if plane == 0 else 1


def encode_residual(source: ResidualSource, luma_quarters: int, chroma_quarters: int, rounding: float,
                    lambdas: tuple[float, float] | None = None) -> tuple[bytes, ResidualSteps, list[torch.Tensor]]:
    """Code ``source`` with dead-zone ``rounding``, then (given ``lambdas``, squared error per bit
    for luma and chroma) :func:`rd_optimise`: the section's bytes, the steps with the
    reconstruction offset that fits best, and the residual planes the decoder will rebuild.

    Work beyond a few passes over block arrays is spent on the blocks that quantise to something.
    """
    n = len(source.coeffs)
    unbiased = ResidualSteps(luma_quarters, chroma_quarters)
    index, levels, scaled = [], [], []
    for i, c in enumerate(source.coeffs):
        step = unbiased.step(_group(i))
        # A block quantises to something iff its largest magnitude does (the quantiser is monotone).
        idx = np.flatnonzero((torch.floor(source.block_max[i] / step + rounding) >= 1).numpy())
        rows = c[torch.from_numpy(idx)]
        index.append(idx)
        levels.append(quantise(rows, step, rounding))
        scaled.append((rows / step).reshape(-1))
    bias = best_bias(torch.cat(scaled), np.concatenate([lv.reshape(-1) for lv in levels]))
    steps = ResidualSteps(luma_quarters, chroma_quarters, bias)
    classes = [classes_from_activity(source.activities[i], steps.step(_group(i))) for i in range(n)]
    out = bytearray()
    rebuilt: list[torch.Tensor | None] = [None] * n
    for group, planes in enumerate(plane_groups(n)):
        step = steps.step(group)
        offsets = np.cumsum([0] + [classes[i].size for i in planes])
        group_classes = np.concatenate([classes[i] for i in planes])
        flat_index = np.concatenate([index[i] + o for i, o in zip(planes, offsets)])
        q = np.concatenate([levels[i] for i in planes])
        if lambdas is not None:
            c = np.concatenate([source.coeffs[i][torch.from_numpy(index[i])].numpy() for i in planes])
            q = _rd_optimise_active(c, q, group_classes[flat_index], np.bincount(group_classes, minlength=NUM_CLASSES),
                                    step, bias, lambdas[group], rounds=2)
        kept = (q != 0).any(axis=1)
        flat_index, q = flat_index[kept], q[kept]
        out += _encode_coded(group_classes, flat_index, q)
        for i, lo, hi in zip(planes, offsets[:-1], offsets[1:]):
            inside = (flat_index >= lo) & (flat_index < hi)
            rebuilt[i] = rebuild_blocks(source.blocks[i], flat_index[inside] - lo, q[inside], step, steps.bias)
    return bytes(out), steps, rebuilt
