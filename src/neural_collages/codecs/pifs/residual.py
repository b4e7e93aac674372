"""The residual layer of the PIFS codec: 8×8 DCT coefficients of what the fractal code leaves.

A fractal code reproduces edges and self-similar structure cheaply but hits a ceiling on fine,
non-self-similar texture. The residual layer codes ``target − fractal decode`` (per plane, in
8-bit units, after deblocking) as uniformly quantised orthonormal 8×8 DCT coefficients.

**Contexts come from the fractal decode.** The decoder has the 1× fractal decode before it reads
any residual, so every block gets an *activity class* from that decode (how much AC energy its
8×8 DCT has, relative to the quantisation step): busy blocks leave large residuals, flat ones
almost none. Symbols are coded in two vectorised passes with :mod:`~neural_collages.coding.table_coding`:

1. a *coded-block flag* per block, under a table per (plane group, activity class);
2. the 64 quantised coefficients of every flagged block, under a table per (plane group,
   activity class, frequency band).

Each table is a two-parameter model stored in the file as two bytes: the probability of a
nonzero value (``NONZERO_COUNTS``, an integer table) and the decay ``θ = j / 128`` of a geometric
law on the magnitude (sign equiprobable). Tables are built from those integers by elementwise
float64 arithmetic and :func:`~neural_collages.coding.table_coding.quantise_pmf`, which are
deterministic, so the encoder and every decoder build identical coders.

**Determinism.** The transforms are written as elementwise multiply-adds in a fixed order (no
matmul, no reductions in floating point: activities are sums of integers), so the residual and
the contexts are bit-identical on every machine, as the rest of the decoder is.

**At scale s** the 1× residual ``r`` is added as ``U(r) + N(r − P(U(r)))`` (``U``: separable
linear interpolation, ``P``: s×s box average, ``N``: nearest replication), whose s×s average is
exactly ``r``: adding it keeps the relation between the pooled s× decode and the 1× decode.

Byte layout (inside the PIFS payload, after the fractal streams): per plane group (luma, then
chroma if present) the flag-table parameters of every activity class with blocks (1 byte each),
then the coefficient-table parameters of every (class, band) with coded coefficients (2 bytes
each), then the flags' table-coded bytes and the coefficients' table-coded bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...coding import table_coding
from ...coding.table_coding import FrequencyTables
from ...coding.varints import ByteReader, read_varint
from ...errors import FormatError
from .zoom import shifted, upsample_axis

BLOCK = 8
#: Quantised coefficients are clipped to ±MAX_LEVEL by the encoder (a table's alphabet).
MAX_LEVEL = 255
#: Zigzag index ↦ band: DC, then growing groups of diagonals.
BAND_EDGES = (0, 1, 3, 6, 10, 15, 21, 36, 64)
NUM_BANDS = len(BAND_EDGES) - 1
NUM_CLASSES = 6
#: A block's class is the number of these thresholds (× step) its fractal AC activity exceeds.
CLASS_THRESHOLDS = (1.0, 3.0, 8.0, 20.0, 50.0)
#: Nonzero probability of a table, out of 65536: index i ↦ 65536·(2^(−1/8))^i, by an integer
#: recurrence (exact everywhere), i = 0 … 127.
NONZERO_COUNTS = [65535]
for _ in range(127):
    NONZERO_COUNTS.append(max(1, NONZERO_COUNTS[-1] * 59870 >> 16))
del _
DECAY_LEVELS = 128  # θ = j / 128


def _zigzag(n: int) -> list[int]:
    order = sorted(((y, x) for y in range(n) for x in range(n)),
                   key=lambda p: (p[0] + p[1], p[1] if (p[0] + p[1]) % 2 else p[0]))
    return [y * n + x for y, x in order]


ZIGZAG = _zigzag(BLOCK)
BAND_OF = np.repeat(np.arange(NUM_BANDS), np.diff(BAND_EDGES))


def _dct_matrix(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)
    c = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    c[0] = math.sqrt(1.0 / n)
    return c


# Rounded to float32 once so the decoder's constants are the same on every machine.
_C32 = [[float(v) for v in row] for row in _dct_matrix(BLOCK).to(torch.float32).tolist()]


def _transform_rows(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    """Apply the 8-point DCT (or its transpose) along the last axis, as fixed-order multiply-adds."""
    out = []
    for u in range(BLOCK):
        acc = None
        for k in range(BLOCK):
            coef = _C32[k][u] if inverse else _C32[u][k]
            term = x[..., k] * coef
            acc = term if acc is None else acc + term
        out.append(acc)
    return torch.stack(out, dim=-1)


def block_dct(plane: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` (multiples of 8) → ``(H/8, W/8, 64)`` orthonormal DCT coefficients, zigzag order."""
    H, W = plane.shape
    b = plane.reshape(H // BLOCK, BLOCK, W // BLOCK, BLOCK).permute(0, 2, 1, 3)  # (by, bx, y, x)
    t = _transform_rows(b, False)  # along x
    t = _transform_rows(t.transpose(-1, -2), False).transpose(-1, -2)  # along y
    return t.reshape(H // BLOCK, W // BLOCK, BLOCK * BLOCK)[..., ZIGZAG]


def block_idct(coeffs: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`block_dct`: ``(Hb, Wb, 64)`` zigzag coefficients → ``(8·Hb, 8·Wb)``."""
    Hb, Wb, _ = coeffs.shape
    natural = torch.empty_like(coeffs)
    natural[..., ZIGZAG] = coeffs
    t = natural.reshape(Hb, Wb, BLOCK, BLOCK)
    t = _transform_rows(t.transpose(-1, -2), True).transpose(-1, -2)
    t = _transform_rows(t, True)
    return t.permute(0, 2, 1, 3).reshape(Hb * BLOCK, Wb * BLOCK)


def block_activity(decoded: torch.Tensor) -> np.ndarray:
    """Per 8×8 block of a fractal decode: the sum of the rounded magnitudes of its AC coefficients
    (int64 ``(Hb, Wb)``), an integer, so it does not depend on summation order."""
    return block_dct(decoded.to(torch.float32))[..., 1:].abs().round().to(torch.int64).sum(-1).numpy()


def classes_from_activity(activity: np.ndarray, step: float) -> np.ndarray:
    """Each block's class 0 … NUM_CLASSES − 1: how many of CLASS_THRESHOLDS (× step) its activity exceeds."""
    classes = np.zeros(activity.shape, dtype=np.int64)
    for t in CLASS_THRESHOLDS:
        classes += activity > t * step
    return classes


def activity_classes(decoded: torch.Tensor, step: float) -> np.ndarray:
    """Per 8×8 block of a fractal decode: its class (:func:`classes_from_activity` of :func:`block_activity`)."""
    return classes_from_activity(block_activity(decoded), step)


@dataclass(frozen=True)
class ResidualSteps:
    """Quantisation of a residual layer: steps (8-bit units, ``quarter`` = 4·step) per plane group,
    and the reconstruction offset ``bias`` (nonzero values are rebuilt at ``(|q| − bias/16)·step``)."""

    luma_quarters: int
    chroma_quarters: int
    bias: int = 0

    def step(self, group: int) -> float:
        return (self.luma_quarters if group == 0 else self.chroma_quarters) / 4.0


def magnitude_pmf(nonzero_index: int, decay_index: int) -> np.ndarray:
    """The pmf over −MAX_LEVEL … MAX_LEVEL of a table's two parameters (deterministic float64)."""
    nz = NONZERO_COUNTS[nonzero_index] / 65536.0
    theta = decay_index / DECAY_LEVELS
    geo = np.empty(MAX_LEVEL)
    geo[0] = 1.0
    if MAX_LEVEL > 1:
        geo[1:] = theta
        geo = np.cumprod(geo)  # θ^(a−1), sequential products
    geo = geo * ((1.0 - theta) * 0.5 * nz)
    pmf = np.concatenate([geo[::-1], [1.0 - nz], geo])
    return np.maximum(pmf, 0.0)


def flag_pmf(nonzero_index: int) -> np.ndarray:
    nz = NONZERO_COUNTS[nonzero_index] / 65536.0
    return np.array([1.0 - nz, nz])


def frequency_tables(pmfs: list[np.ndarray], offset: int) -> FrequencyTables:
    return FrequencyTables.from_pmf(np.stack(pmfs), offsets=np.full(len(pmfs), offset, dtype=np.int64))


def coefficient_contexts(classes_of_coded: np.ndarray) -> np.ndarray:
    """(n_blocks,) classes → (n_blocks·64,) context ids class·NUM_BANDS + band."""
    return (classes_of_coded[:, None] * NUM_BANDS + BAND_OF[None, :]).reshape(-1)


def dequantise(levels: np.ndarray, step: float, bias: int) -> torch.Tensor:
    q = torch.from_numpy(levels.astype(np.float32))
    shrink = torch.clamp(q.abs() - bias / 16.0, min=0.0) * q.sign()
    return shrink * np.float32(step)


def context_tables(params: dict, num_contexts: int, pmf, offset: int):
    """Tables of the contexts in ``params`` (sorted) and the map context id → table number."""
    ids = sorted(params)
    if not ids:
        return None, None
    tables = frequency_tables([pmf(params[c]) for c in ids], offset)
    remap = np.zeros(num_contexts, dtype=np.int64)
    remap[ids] = np.arange(len(ids))
    return tables, remap


def decode_group(reader: ByteReader, classes_per_plane: list[np.ndarray]) -> list[np.ndarray]:
    """Inverse of :func:`~.residual_encoder.encode_group`: the quantised coefficients ``(Hb, Wb, 64)`` of every plane.

    Hostile input: parameters are range-checked, every segment must be exactly a table-coded
    string, a flagged block must have a nonzero coefficient, and the number of flagged blocks is
    bounded by the coefficient segment's size before anything is decoded (each nonzero value
    costs at least one bit: its sign is equiprobable).
    """
    classes = np.concatenate([c.reshape(-1) for c in classes_per_plane])
    flag_params = {}
    for a in np.unique(classes).tolist():
        flag_params[a] = _read_index(reader, len(NONZERO_COUNTS), "residual flag parameter")
    flags = _decode(reader, classes, flag_params, NUM_CLASSES, flag_pmf, 0, "flags")
    coded_classes = classes[flags == 1]
    contexts = coefficient_contexts(coded_classes)
    coef_params = {}
    for ctx in np.unique(contexts).tolist():
        coef_params[ctx] = (_read_index(reader, len(NONZERO_COUNTS), "residual coefficient parameter"),
                            _read_index(reader, DECAY_LEVELS, "residual decay parameter"))
    words, _ = read_varint(reader.data, reader.pos, "residual word count")
    if coded_classes.size > 32 * words + 64:
        raise FormatError(f"{coded_classes.size} coded residual blocks cannot fit in {words} words")
    values = _decode(reader, contexts, coef_params, NUM_CLASSES * NUM_BANDS, lambda p: magnitude_pmf(*p),
                     -MAX_LEVEL, "coefficients")
    coded = values.reshape(-1, BLOCK * BLOCK)
    if coded.size and not (coded != 0).any(axis=1).all():
        raise FormatError("a flagged residual block has no nonzero coefficient")
    levels = np.zeros((classes.size, BLOCK * BLOCK), dtype=np.int64)
    levels[flags == 1] = coded
    out, start = [], 0
    for c in classes_per_plane:
        out.append(levels[start:start + c.size].reshape(*c.shape, BLOCK * BLOCK))
        start += c.size
    return out


def _read_index(reader: ByteReader, limit: int, what: str) -> int:
    value = reader.take(1, what)[0]
    if value >= limit:
        raise FormatError(f"{what} {value} out of range")
    return value


def _decode(reader: ByteReader, contexts, params, num_contexts, pmf, offset, what: str) -> np.ndarray:
    words, after = read_varint(reader.data, reader.pos, f"residual {what} word count")
    segment = reader.take(after - reader.pos + 4 * words, f"residual {what}")
    tables, remap = context_tables(params, num_contexts, pmf, offset)
    if tables is None:
        if segment != bytes([0]):
            raise FormatError(f"residual {what}: data where no symbols are coded")
        return np.zeros(0, dtype=np.int64)
    return table_coding.decode(segment, remap[contexts], tables)


# --------------------------------------------------------------------------------------------
# Planes


def plane_groups(num_planes: int) -> list[list[int]]:
    """Plane indices per group: luma, then (if colour) the two chroma planes, which share tables."""
    return [[0]] if num_planes == 1 else [[0], [1, 2]]


def rebuild_blocks(blocks: tuple[int, int], index: np.ndarray, levels: np.ndarray, step: float,
                   bias: int) -> torch.Tensor:
    """The residual plane ``(8·Hb, 8·Wb)`` (float32) of a ``blocks = (Hb, Wb)`` grid whose blocks at
    the flat indices ``index`` have the quantised coefficients ``levels`` ``(m, 64)``, the others
    none. Only those blocks are transformed (elementwise, so each is what a whole-plane
    :func:`block_idct` would give it)."""
    Hb, Wb = blocks
    plane = torch.zeros(Hb * Wb, BLOCK, BLOCK, dtype=torch.float32)  # (block, y, x)
    if index.size:
        rows = block_idct(dequantise(levels, step, bias)[None])  # (8, 8·m): the blocks side by side
        plane[torch.from_numpy(index)] = rows.reshape(BLOCK, index.size, BLOCK).transpose(0, 1)
    return plane.reshape(Hb, Wb, BLOCK, BLOCK).permute(0, 2, 1, 3).reshape(Hb * BLOCK, Wb * BLOCK)


def decode_residual(reader: ByteReader, fractal: list[torch.Tensor], steps: ResidualSteps) -> list[torch.Tensor]:
    """The residual planes of a section, given the 1× (deblocked, padded) fractal planes."""
    rebuilt: list[torch.Tensor | None] = [None] * len(fractal)
    for group, planes in enumerate(plane_groups(len(fractal))):
        step = steps.step(group)
        levels = decode_group(reader, [activity_classes(fractal[i], step) for i in planes])
        for i, lv in zip(planes, levels):
            flat = lv.reshape(-1, BLOCK * BLOCK)
            index = np.flatnonzero(flat.any(axis=1))
            rebuilt[i] = rebuild_blocks(lv.shape[:2], index, flat[index], step, steps.bias)
    if reader.remaining():
        raise FormatError(f"{reader.remaining()} bytes after the residual layer")
    return rebuilt


# --------------------------------------------------------------------------------------------
# Adding a 1x residual to an s× plane


def _linear_phases(scale: int) -> list[list[tuple[int, float]]]:
    """Per output phase t of an s× upsampling: the taps (offset, weight) of linear interpolation
    (the sample itself, then its neighbour on the side the phase leans to)."""
    phases = []
    for t in range(scale):
        f = (t + 0.5) / scale - 0.5
        phases.append([(0, 1.0 - f), (1, f)] if f > 0 else [(0, 1.0 + f), (-1, -f)] if f < 0 else [(0, 1.0)])
    return phases


def _pooled_upsample_axis(x: torch.Tensor, dim: int, scale: int) -> torch.Tensor:
    """The s-sample average of the linear upsampling along ``dim``: a symmetric 3-tap filter."""
    side = sum(w for taps in _linear_phases(scale) for offset, w in taps if offset > 0) / scale
    if side == 0.0:
        return x
    return x * (1.0 - 2.0 * side) + (shifted(x, dim, -1) + shifted(x, dim, 1)) * side


#: Rows of the 1x residual upsampled at a time: temporaries stay strips of the s× plane.
STRIP_ROWS = 32


def add_upsampled(plane: torch.Tensor, residual: torch.Tensor, scale: int) -> None:
    """``plane += U(r) + N(r − P(U(r)))`` in place, ``plane`` the top-left ``(≤ s·H, ≤ s·W)`` of the s× grid.

    ``U`` is separable linear interpolation, ``P`` the s×s box average, ``N`` nearest replication:
    the s×s average of what is added is ``r`` (up to rounding), so pooling keeps the 1× relation.
    """
    if scale == 1:
        plane += residual[: plane.shape[0], : plane.shape[1]]
        return
    H = residual.shape[0]
    rows_out, cols_out = plane.shape
    phases = _linear_phases(scale)
    for y0 in range(0, -(-rows_out // scale), STRIP_ROWS):
        y1 = min(H, y0 + STRIP_ROWS)
        lo, hi = max(0, y0 - 1), min(H, y1 + 1)
        strip = residual[lo:hi]
        # Interpolate along x on the strip, then along y; the halo rows give the right neighbours.
        up = upsample_axis(upsample_axis(strip, 1, phases), 0, phases)
        pooled = _pooled_upsample_axis(_pooled_upsample_axis(strip, 1, scale), 0, scale)
        correction = (strip - pooled).repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        part = (up + correction)[(y0 - lo) * scale:(y0 - lo + y1 - y0) * scale]
        r0, r1 = y0 * scale, min(rows_out, y1 * scale)
        plane[r0:r1] += part[: r1 - r0, :cols_out]
