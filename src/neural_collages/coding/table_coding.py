"""Entropy coding of integer symbols under fixed integer frequency tables shipped with a model.

A learned codec's *factorized* entropy model gives every coded symbol a *table*: one discrete
distribution per code-coefficient type (channel, sub-band, ...). The tables are part of the
model weights, not of the compressed file, so the encoder and the decoder are handed the same
:class:`FrequencyTables` and the file holds only the range-coded words.

## Tables

:class:`FrequencyTables` holds ``counts`` -- an integer array of shape ``(T, K)``, every entry
``≥ 1``, every row summing to exactly ``2**PRECISION_BITS = 65536`` -- and ``offsets``, shape
``(T,)``. A value ``v`` coded under table ``t`` is coded as the symbol ``s = v - offsets[t]``,
which must lie in ``[0, K)``; :meth:`FrequencyTables.clamp` maps arbitrary integers into that
range, :meth:`FrequencyTables.bits` (and :func:`cost_bits`) give the ideal code length
``-Σ log2(counts[t, s] / 65536)``. :func:`quantise_pmf` turns float pmfs (a trained model's
output) into such counts, once, when the model is exported; only the integer counts matter
afterwards.

**Bit-exactness.** Table ``t`` is coded with
``constriction.stream.model.Categorical(counts[t] / 65536.0, perfect=False)``, the
probabilities computed in float64. Those quotients are dyadic rationals, exact in float64, so
the model depends only on the integers, and ``constriction`` (pinned at 0.5) quantises it with
plain IEEE arithmetic to its 24-bit fixed-point model: with ``C_i`` the cumulative count below
symbol ``i``, the coder's left cumulative is ``floor(C_i · (2**24 - K) / 65536) + i`` (every
product exact in float64), i.e. the coder's probability of a symbol is
``(counts · (2**24 - K) / 65536 + 1 ± 1) / 2**24`` -- within a relative ``K / 2**24`` of
``counts / 65536`` for all but the tiniest counts, so :meth:`FrequencyTables.probabilities`
(``counts / 65536``) is the model the coder implements up to that rounding and the measured
rate is within a fraction of a percent of :meth:`~FrequencyTables.bits`.

## Coding order

All symbols go through ONE ``constriction.stream.queue.RangeEncoder`` (32-bit words, its
defaults). They are coded **table by table in increasing table index, and within a table in
the order they appear in the input** (a stable grouping); tables without symbols code nothing.
Each table's symbols are coded as one i.i.d. batch with that table's concrete model, so no
``(N, K)`` probability array is ever built. The decoder learns how many symbols each table has
from the caller's ``table_index`` (which it must receive identically), decodes the tables in the
same order and scatters the values back to their input positions.

## Byte layout

=====================  ====================================================================
field                  meaning
=====================  ====================================================================
varint ``W``           number of 32-bit words of range-coded data; unsigned LEB128 (7 bits
                       per byte, least significant group first, high bit set on every byte
                       but the last), minimal (no ``0x80 ... 0x00`` padding), ≤ 9 bytes
``4 W`` bytes          the words, each little-endian; the data ends exactly here
=====================  ====================================================================

There is no magic, version or symbol count: this is a payload for a container that records
those. Zero symbols encode as the single byte ``0x00``.

## Decoding hostile data

:func:`decode` raises :class:`FormatError` -- never another exception -- for every byte string
that is not exactly what :func:`encode` writes for some values under the given table indices
and tables: it checks that the varint is minimal, that ``4 W`` equals the number of bytes after
it (truncation, trailing bytes; so nothing read from the data sizes an allocation beyond
``len(data)``), and that re-encoding the decoded values reproduces exactly the stored words
(the format is canonical: ``encode(decode(data, ti, tab), ti, tab) == data`` whenever decoding
succeeds). Exceptions raised inside ``constriction`` (including Rust panics, which derive from
``BaseException``) become :class:`FormatError`. Time and memory are ``O(N + len(data))`` with
``N = len(table_index)`` supplied by the caller. There is no checksum: a corruption that turns
one valid encoding into another decodes to other (in-range) values; integrity is the
container's job.

Bad *arguments* -- invalid tables, non-integer or multi-dimensional arrays, mismatched lengths,
table indices outside ``[0, T)``, values outside their table's range in :func:`encode` --
raise :class:`ConfigurationError`.
"""

from __future__ import annotations


import constriction
import numpy as np

from ..checks import is_int
from ..errors import ConfigurationError, FormatError
from .varints import put_varint, read_varint

__all__ = [
    "PRECISION_BITS",
    "FrequencyTables",
    "quantise_pmf",
    "encode",
    "decode",
    "cost_bits",
]

PRECISION_BITS = 16
_TOTAL = 1 << PRECISION_BITS
MAX_OFFSET = 2**62
_MAX_QUANTISE_BITS = 30
_INT64_MAX = np.iinfo(np.int64).max


# --------------------------------------------------------------------------------------------
# Quantisation of float pmfs (model export time)


def quantise_pmf(pmf, precision_bits: int = PRECISION_BITS) -> np.ndarray:
    """Integer counts closest (in KL divergence, approximately) to the rows of ``pmf``.

    ``pmf`` has shape ``(T, K)`` (or ``(K,)``, giving a ``(K,)`` result); entries are
    non-negative and finite, each row has a positive sum (rows need not be normalised). The
    result is an ``int32`` array of the same shape whose entries are all ``≥ 1`` and whose rows
    each sum to exactly ``2**precision_bits``.

    Method, per row, with ``p`` the normalised row and ``M = 2**precision_bits``: water-filling
    -- symbols whose share ``p · s`` would fall below one count get exactly 1, the others
    ``floor(p · s)`` with ``s`` chosen so the real-valued shares sum to ``M`` -- then the
    remaining deficit is handed out one count at a time to the symbols with the largest
    ``p / (c + 0.5)`` (≈ the KL gain of one more count), ties to the more probable and then the
    lower-indexed symbol; a (rounding-only) surplus is taken from the smallest
    ``p / (c - 0.5)`` among counts above 1. Only elementwise IEEE float64 arithmetic, sorting
    and integer operations are used, so the result is deterministic.

    Raises :class:`ConfigurationError` for a bad shape (``K < 2`` or ``K > 2**precision_bits``),
    negative, non-finite or all-zero rows, or ``precision_bits`` outside ``[1, 30]``.
    """
    if not is_int(precision_bits) or not 1 <= int(precision_bits) <= _MAX_QUANTISE_BITS:
        raise ConfigurationError(
            f"precision_bits must be an integer in [1, {_MAX_QUANTISE_BITS}], "
            f"got {precision_bits!r}"
        )
    total = 1 << int(precision_bits)
    try:
        arr = np.asarray(pmf)
    except Exception as exc:
        raise ConfigurationError(f"pmf is not an array ({exc})") from None
    if arr.dtype.kind not in "iuf":
        raise ConfigurationError(f"pmf must be a real array, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ConfigurationError(f"pmf must have shape (T, K) or (K,), got {arr.shape}")
    rows = arr.reshape(1, -1) if arr.ndim == 1 else arr
    rows = rows.astype(np.float64)
    k = rows.shape[1]
    if not 2 <= k <= total:
        raise ConfigurationError(f"pmf alphabet K = {k} must be in [2, {total}]")
    if not np.all(np.isfinite(rows)) or (rows.size and rows.min() < 0):
        raise ConfigurationError("pmf entries must be non-negative and finite")
    sums = rows.sum(axis=1)
    if not np.all(np.isfinite(sums)) or not np.all(sums > 0):
        raise ConfigurationError("every pmf row must have a finite positive sum")
    out = np.empty(rows.shape, dtype=np.int32)
    for t in range(rows.shape[0]):
        out[t] = _quantise_row(rows[t] / sums[t], total)
    return out[0] if arr.ndim == 1 else out


def _quantise_row(p: np.ndarray, total: int) -> np.ndarray:
    k = p.size
    order = np.argsort(-p, kind="stable")  # most probable first, ties by index
    ps = p[order]
    csum = np.cumsum(ps)
    # Water-filling: with the j most probable symbols "free" and the rest fixed at one count,
    # the free ones share total - (k - j) counts; take the largest j whose least probable free
    # symbol still gets at least one count (j = 1 always qualifies).
    j_all = np.arange(1, k + 1, dtype=np.float64)
    ok = ps * (total - k + j_all) >= csum
    j = int(np.flatnonzero(ok)[-1]) + 1
    scale = (total - k + j) / csum[j - 1]
    c = np.ones(k, dtype=np.int64)
    c[:j] = np.maximum(np.floor(ps[:j] * scale), 1.0).astype(np.int64)
    deficit = total - int(c.sum())
    while deficit > 0:
        gain = ps / (c + 0.5)
        pick = np.argsort(-gain, kind="stable")[: min(deficit, k)]
        c[pick] += 1
        deficit -= pick.size
    while deficit < 0:
        loss = np.where(c > 1, ps / (c - 0.5), np.inf)
        pick = np.argsort(loss, kind="stable")[: min(-deficit, int(np.count_nonzero(c > 1)))]
        c[pick] -= 1
        deficit += pick.size
    row = np.empty(k, dtype=np.int64)
    row[order] = c
    return row


# --------------------------------------------------------------------------------------------
# Argument validation


def _int_array(x, what: str) -> np.ndarray:
    """A 1-D integer array (any integer dtype; empty arrays of any dtype are accepted)."""
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise ConfigurationError(f"{what} is not an array ({exc})") from None
    if arr.ndim != 1:
        raise ConfigurationError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise ConfigurationError(f"{what} must be integers, got dtype {arr.dtype}")
    return arr


def _to_int64(arr: np.ndarray, what: str, lo: int, hi: int) -> np.ndarray:
    """``arr`` as int64, checked to lie in ``[lo, hi]`` (without wrap-around)."""
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    mn, mx = int(arr.min()), int(arr.max())
    if mn < lo or mx > hi:
        raise ConfigurationError(f"{what} in [{mn}, {mx}] outside [{lo}, {hi}]")
    return arr.astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------------
# Tables


class FrequencyTables:
    """Fixed integer frequency tables: ``counts`` ``(T, K)`` and ``offsets`` ``(T,)``.

    Every count must be ``≥ 1`` and every row must sum to ``2**PRECISION_BITS``; ``2 ≤ K ≤
    2**PRECISION_BITS``, ``T ≥ 1``; ``|offset| ≤ 2**62``. Table ``t`` represents the values
    ``offsets[t] .. offsets[t] + K - 1``. ``offsets`` defaults to zeros. Both arrays are copied
    and stored read-only (``counts`` as int32, ``offsets`` as int64). Invalid arguments raise
    :class:`ConfigurationError`.
    """

    __slots__ = ("counts", "offsets", "_neg_log2", "_probs64")

    def __init__(self, counts, offsets=None) -> None:
        try:
            c = np.asarray(counts)
        except Exception as exc:
            raise ConfigurationError(f"counts is not an array ({exc})") from None
        if c.ndim != 2:
            raise ConfigurationError(f"counts must have shape (T, K), got {c.shape}")
        t, k = c.shape
        if t < 1:
            raise ConfigurationError("counts must have at least one table")
        if not 2 <= k <= _TOTAL:
            raise ConfigurationError(f"table alphabet K = {k} must be in [2, {_TOTAL}]")
        if c.dtype.kind not in "iu":
            raise ConfigurationError(f"counts must be integers, got dtype {c.dtype}")
        if int(c.min()) < 1 or int(c.max()) > _TOTAL:
            raise ConfigurationError("every count must be in [1, 2**PRECISION_BITS]")
        c = c.astype(np.int64)
        sums = c.sum(axis=1)
        bad = np.flatnonzero(sums != _TOTAL)
        if bad.size:
            raise ConfigurationError(
                f"table {int(bad[0])} sums to {int(sums[bad[0]])}, not 2**{PRECISION_BITS}"
            )
        if offsets is None:
            off = np.zeros(t, dtype=np.int64)
        else:
            o = _int_array(offsets, "offsets")
            if o.shape != (t,):
                raise ConfigurationError(f"offsets must have shape ({t},), got {o.shape}")
            off = _to_int64(o, "offsets", -MAX_OFFSET, MAX_OFFSET).copy()
        counts32 = c.astype(np.int32)
        counts32.flags.writeable = False
        off.flags.writeable = False
        self.counts = counts32
        self.offsets = off
        neg = PRECISION_BITS - np.log2(c.astype(np.float64))
        neg.flags.writeable = False
        self._neg_log2 = neg
        self._probs64 = None  # float64 counts / 2**16, built on first in-order use

    @classmethod
    def from_pmf(cls, pmf, offsets=None) -> "FrequencyTables":
        """Tables from float pmfs ``(T, K)`` via :func:`quantise_pmf`."""
        counts = quantise_pmf(pmf, PRECISION_BITS)
        if counts.ndim == 1:
            counts = counts.reshape(1, -1)
        return cls(counts, offsets)

    @property
    def num_tables(self) -> int:
        return int(self.counts.shape[0])

    @property
    def alphabet_size(self) -> int:
        return int(self.counts.shape[1])

    def __repr__(self) -> str:
        return f"FrequencyTables(T={self.num_tables}, K={self.alphabet_size})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrequencyTables):
            return NotImplemented
        return np.array_equal(self.counts, other.counts) and np.array_equal(
            self.offsets, other.offsets
        )

    __hash__ = None  # mutable-looking container of arrays

    def probabilities(self) -> np.ndarray:
        """``counts / 2**PRECISION_BITS`` as float64 ``(T, K)`` (exact dyadic values)."""
        return self.counts.astype(np.float64) / float(_TOTAL)

    def table_indices(self, table_index, n: int | None = None) -> np.ndarray:
        """``table_index`` validated as a 1-D integer array in ``[0, T)`` (of length ``n``)."""
        ti = _int_array(table_index, "table_index")
        if n is not None and ti.shape != (n,):
            raise ConfigurationError(f"table_index has {ti.size} entries, expected {n}")
        return _to_int64(ti, "table_index", 0, self.num_tables - 1)

    def _values_and_tables(self, values, table_index) -> tuple[np.ndarray, np.ndarray]:
        v = _int_array(values, "values")
        ti = self.table_indices(table_index, v.size)
        return v, ti

    def symbols(self, values, table_index) -> tuple[np.ndarray, np.ndarray]:
        """``(values - offsets[table_index], table_index)`` as int64, checked to be in range.

        Raises :class:`ConfigurationError` when a value lies outside its table's range.
        """
        v, ti = self._values_and_tables(values, table_index)
        if v.size == 0:
            return np.zeros(0, dtype=np.int64), ti
        if v.dtype.kind == "u" and int(v.max()) > _INT64_MAX:
            raise ConfigurationError(f"value {int(v.max())} outside every table's range")
        v = v.astype(np.int64, copy=False)
        lo = self.offsets[ti]
        bad = (v < lo) | (v > lo + (self.alphabet_size - 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            t = int(ti[i])
            lo_t = int(self.offsets[t])
            raise ConfigurationError(
                f"value {int(v[i])} at position {i} outside table {t}'s range "
                f"[{lo_t}, {lo_t + self.alphabet_size - 1}] (clamp first)"
            )
        return v - lo, ti

    def bits(self, values, table_index) -> float:
        """Ideal code length ``-Σ log2(counts[t, v - offsets[t]] / 2**PRECISION_BITS)`` in
        bits (values validated as in :func:`encode`). The range coder's output is within a
        fraction of a percent plus a few words of this."""
        sym, ti = self.symbols(values, table_index)
        if sym.size == 0:
            return 0.0
        return float(self._neg_log2[ti, sym].sum())

    def clamp(self, values, table_index) -> np.ndarray:
        """``values`` clipped to ``[offsets[t], offsets[t] + K - 1]`` of their tables (int64)."""
        v, ti = self._values_and_tables(values, table_index)
        if v.size == 0:
            return np.zeros(0, dtype=np.int64)
        if v.dtype.kind == "u" and int(v.max()) > _INT64_MAX:
            v = np.minimum(v, np.uint64(_INT64_MAX))
        v = v.astype(np.int64, copy=False)
        lo = self.offsets[ti]
        return np.clip(v, lo, lo + (self.alphabet_size - 1))

    def _model(self, t: int):
        probs = self.counts[t].astype(np.float64) / float(_TOTAL)
        return constriction.stream.model.Categorical(probs, perfect=False)


def cost_bits(values, table_index, tables: FrequencyTables) -> float:
    """Ideal code length in bits of ``values`` under ``tables`` (= ``tables.bits``)."""
    _check_tables(tables)
    return tables.bits(values, table_index)


def _check_tables(tables) -> None:
    if not isinstance(tables, FrequencyTables):
        raise ConfigurationError(f"expected FrequencyTables, got {type(tables).__name__}")


# --------------------------------------------------------------------------------------------
# Grouping by table


def _grouping(ti: np.ndarray, num_tables: int) -> tuple[np.ndarray | None, np.ndarray]:
    """``(order, bounds)``: ``order`` lists the positions table by table (stable), ``None`` for
    the identity; symbols of table ``t`` are ``order[bounds[t]:bounds[t+1]]``."""
    per_table = np.bincount(ti, minlength=num_tables)
    bounds = np.zeros(num_tables + 1, dtype=np.int64)
    np.cumsum(per_table, out=bounds[1:])
    if ti.size == 0 or int(ti.min()) == int(ti.max()):
        return None, bounds
    key = ti.astype(np.uint16) if num_tables <= 1 << 16 else ti  # radix sort for small keys
    return np.argsort(key, kind="stable"), bounds


def _code_words(sym_sorted: np.ndarray, bounds: np.ndarray, tables: FrequencyTables) -> np.ndarray:
    encoder = constriction.stream.queue.RangeEncoder()
    for t in range(tables.num_tables):
        a, b = int(bounds[t]), int(bounds[t + 1])
        if b > a:
            encoder.encode(sym_sorted[a:b], tables._model(t))
    return encoder.get_compressed()


# --------------------------------------------------------------------------------------------
# Encoding and decoding


def encode(values, table_index, tables: FrequencyTables) -> bytes:
    """Range-code ``values[i]`` under table ``table_index[i]`` (1-D integer arrays of equal
    length) into bytes (order and layout in the module docstring).

    Raises :class:`ConfigurationError` for bad arrays, table indices outside ``[0, T)`` and
    values outside their table's range (use :meth:`FrequencyTables.clamp` first).
    """
    _check_tables(tables)
    sym, ti = tables.symbols(values, table_index)
    order, bounds = _grouping(ti, tables.num_tables)
    sym32 = sym.astype(np.int32)
    if order is not None:
        sym32 = sym32[order]
    words = _code_words(sym32, bounds, tables)
    out = bytearray()
    put_varint(out, int(words.size))
    return bytes(out) + words.astype("<u4", copy=False).tobytes()


def decode(data, table_index, tables: FrequencyTables) -> np.ndarray:
    """Inverse of :func:`encode` for the same ``table_index`` and ``tables``: the int64 values.

    Raises :class:`FormatError` for any ``data`` that is not exactly an encoding produced by
    :func:`encode` (see the module docstring), :class:`ConfigurationError` for bad arguments.
    """
    _check_tables(tables)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ConfigurationError(f"data must be bytes, got {type(data).__name__}")
    ti = tables.table_indices(table_index)
    order, bounds = _grouping(ti, tables.num_tables)
    try:
        sym_sorted = _decode_symbols(bytes(data), bounds, tables)
    except FormatError:
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # constriction errors, including Rust panics (BaseException)
        raise FormatError(f"corrupt table-coded data ({type(exc).__name__}: {exc})") from None
    n = ti.size
    if order is None:
        sym = sym_sorted
    else:
        sym = np.empty(n, dtype=np.int64)
        sym[order] = sym_sorted
    return sym + tables.offsets[ti] if n else np.zeros(0, dtype=np.int64)


def _decode_symbols(data: bytes, bounds: np.ndarray, tables: FrequencyTables) -> np.ndarray:
    n_words, used = read_varint(data, 0, "word count")
    remaining = len(data) - used
    if 4 * n_words > remaining:
        raise FormatError(f"truncated table-coded data ({n_words} words announced, "
                          f"{remaining} bytes left)")
    if 4 * n_words < remaining:
        raise FormatError(f"{remaining - 4 * n_words} trailing bytes after the coded words")
    words = np.frombuffer(data, dtype="<u4", offset=used, count=n_words).astype(np.uint32)
    n = int(bounds[-1])
    out = np.empty(n, dtype=np.int64)
    if n:
        decoder = constriction.stream.queue.RangeDecoder(words)
        k = tables.alphabet_size
        for t in range(tables.num_tables):
            a, b = int(bounds[t]), int(bounds[t + 1])
            if b == a:
                continue
            got = np.asarray(decoder.decode(tables._model(t), b - a))
            if got.shape != (b - a,) or int(got.min()) < 0 or int(got.max()) >= k:
                raise FormatError(f"table {t}: decoded symbols out of range")
            out[a:b] = got
    check = _code_words(out.astype(np.int32), bounds, tables)
    if not np.array_equal(check, words):
        raise FormatError("coded words do not match the decoded symbols (corrupt payload)")
    return out


# --------------------------------------------------------------------------------------------
# In-order coding, for context models
#
# ``encode`` groups symbols by table, so the decoder must know every symbol's table before it
# decodes anything. A context model chooses a symbol's table from symbols decoded before it;
# ``encode_in_order`` codes the symbols in the given order instead (same byte layout: varint word
# count, then the words), and :class:`InOrderDecoder` decodes them batch by batch, each batch
# with table indices the caller computes from the batches before. Per-symbol models come from
# the same integer counts (``counts / 2**16`` rows), so the coder's models are the same as
# ``encode``'s; batches are at most ``_ROWS_PER_CALL`` symbols to bound the (n, K) model arrays.

_ROWS_PER_CALL = 1 << 14


def _row_models(tables: FrequencyTables, ti: np.ndarray) -> np.ndarray:
    # One gather from the (exact) float64 probability table, computed once per tables object.
    if tables._probs64 is None:
        tables._probs64 = tables.counts.astype(np.float64) / float(_TOTAL)
    return tables._probs64[ti]


def _encode_in_order_words(sym: np.ndarray, ti: np.ndarray, tables: FrequencyTables) -> np.ndarray:
    encoder = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Categorical(perfect=False)
    for a in range(0, sym.size, _ROWS_PER_CALL):
        b = min(a + _ROWS_PER_CALL, sym.size)
        encoder.encode(sym[a:b].astype(np.int32), family, _row_models(tables, ti[a:b]))
    return encoder.get_compressed()


def encode_in_order(values, table_index, tables: FrequencyTables) -> bytes:
    """Range-code ``values[i]`` under table ``table_index[i]`` in the given order (see above)."""
    _check_tables(tables)
    sym, ti = tables.symbols(values, table_index)
    words = _encode_in_order_words(sym, ti, tables)
    out = bytearray()
    put_varint(out, int(words.size))
    return bytes(out) + words.astype("<u4", copy=False).tobytes()


class InOrderDecoder:
    """Decodes :func:`encode_in_order` data batch by batch; :meth:`finish` checks the whole stream.

    Treats ``data`` as hostile: the word count must match the data exactly, at most
    ``max_symbols`` symbols are decoded, and :meth:`finish` re-encodes everything decoded and
    requires exactly the stored words (so truncated, padded or altered data raises
    :class:`FormatError`; decoding garbage yields values, never a crash).
    """

    def __init__(self, data, tables: FrequencyTables, max_symbols: int):
        _check_tables(tables)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ConfigurationError(f"data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        n_words, used = read_varint(data, 0, "word count")
        remaining = len(data) - used
        if 4 * n_words != remaining:
            raise FormatError(f"table-coded data: {n_words} words announced, {remaining} bytes present")
        self.words = np.frombuffer(data, dtype="<u4", offset=used, count=n_words).astype(np.uint32)
        self.tables = tables
        self.max_symbols = int(max_symbols)
        self._decoder = constriction.stream.queue.RangeDecoder(self.words) if n_words else None
        self._family = constriction.stream.model.Categorical(perfect=False)
        self._symbols: list[np.ndarray] = []
        self._tables: list[np.ndarray] = []
        self.count = 0

    def decode(self, table_index) -> np.ndarray:
        """The next ``len(table_index)`` values (int64), each under its table."""
        ti = self.tables.table_indices(table_index)
        n = ti.size
        if self.count + n > self.max_symbols:
            raise FormatError("more coded symbols requested than the stream may hold")
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if self._decoder is None:
            raise FormatError("table-coded data is empty but symbols are expected")
        out = np.empty(n, dtype=np.int64)
        try:
            for a in range(0, n, _ROWS_PER_CALL):
                b = min(a + _ROWS_PER_CALL, n)
                got = np.asarray(self._decoder.decode(self._family, _row_models(self.tables, ti[a:b])))
                if got.shape != (b - a,) or int(got.min()) < 0 or int(got.max()) >= self.tables.alphabet_size:
                    raise FormatError("decoded symbols out of range")
                out[a:b] = got
        except FormatError:
            raise
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # constriction errors, including Rust panics (BaseException)
            raise FormatError(f"corrupt table-coded data ({type(exc).__name__}: {exc})") from None
        self._symbols.append(out)
        self._tables.append(ti)
        self.count += n
        return out + self.tables.offsets[ti]

    def finish(self) -> None:
        """Raise :class:`FormatError` unless the stored words are exactly the encoding of what was decoded."""
        sym = np.concatenate(self._symbols) if self._symbols else np.zeros(0, dtype=np.int64)
        ti = np.concatenate(self._tables) if self._tables else np.zeros(0, dtype=np.int64)
        try:
            check = _encode_in_order_words(sym, ti, self.tables)
        except BaseException as exc:  # pragma: no cover - symbols were range-checked when decoded
            if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            raise FormatError(f"corrupt table-coded data ({exc})") from None
        if not np.array_equal(check, self.words):
            raise FormatError("table-coded data is not the canonical encoding of its symbols")
