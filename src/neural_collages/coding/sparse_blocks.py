"""Range coding of blocks of mostly-zero symbols by the positions of their nonzero ones.

A *block* is ``D`` values coded under ``D`` consecutive tables ``base .. base + D - 1`` of one
:class:`~neural_collages.coding.table_coding.FrequencyTables` (a range's collage weights: one
table per candidate, ``base`` set by its context). Coding every value on its own builds one
``K``-wide model per value, even for the ~97 % that are zero, and that dominated decoding.
This module codes the *same distribution* another way: per block, the position of each nonzero
value (a categorical over the positions left, and "none left"), then each nonzero value under
its table conditioned on not being zero. With ``p_j`` the tables' probability of zero,

    P(next nonzero at k | after position s) = (1 - p_k) · Π_{s ≤ j < k} p_j,
    P(no nonzero at or after s)              = Π_{s ≤ j < D} p_j,
    P(v | nonzero, table t)                  = P_t(v) / (1 - p_t),

whose product over a block is exactly ``Π_j P_j(v_j)``: the ideal code length is
:meth:`FrequencyTables.bits` of the values, but only ``nonzeros + blocks`` positions and
``nonzeros`` values are coded.

**Stream.** Blocks come in *rows* (a row's bases may depend on the rows before, as contexts
do). Per row: rounds ``r = 0, 1, ...``, each coding, for every block of the row still open in
block order, the position of its ``r``-th nonzero value or "none" (a block is closed by "none"
or by a nonzero at its last position); then the row's nonzero values in block, then position
order. Everything goes through one ``constriction`` queue range coder; the bytes are
:mod:`~neural_collages.coding.table_coding`'s (varint word count, little-endian 32-bit words).
The derived probabilities are computed from the integer counts by the same float64 operations
on both sides (products in a fixed order), so the coder's quantised models agree bit for bit.

**Hostile data.** :class:`BlockDecoder` decodes at most the positions and values the caller's
rows allow (``D + 1`` and ``D`` per block: no unbounded loop), raises :class:`FormatError` on a
position out of order or a "nonzero" value of zero, and :meth:`BlockDecoder.finish` requires
the stored words to be exactly the encoding of what was decoded (canonical, as ``table_coding``).
"""

from __future__ import annotations

import threading

import constriction
import numpy as np

from ..errors import ConfigurationError, FormatError
from .table_coding import FrequencyTables
from .varints import put_varint, read_varint

__all__ = ["BlockModels", "encode_rows", "BlockDecoder"]

_TOTAL = 1 << 16
#: Values per coder call: bounds the (n, K) float64 model arrays (as ``table_coding`` does).
_VALUES_PER_CALL = 1 << 14


class BlockModels:
    """The derived position and value models of a :class:`FrequencyTables` (built once, cached)."""

    def __init__(self, tables: FrequencyTables):
        zero = -tables.offsets
        if zero.min() < 0 or zero.max() >= tables.alphabet_size:
            raise ConfigurationError("sparse block coding needs tables that can code the value 0")
        self.tables = tables
        self.zero = zero  # symbol index of the value 0, per table
        rows = np.arange(tables.num_tables)
        zero_counts = tables.counts[rows, zero].astype(np.float64)
        self.p_zero = zero_counts / _TOTAL  # dyadic: exact
        values = tables.counts.astype(np.float64)
        values[rows, zero] = 0.0
        self.values = values / (_TOTAL - zero_counts)[:, None]  # P(v | nonzero), (T, K)
        # Per block width: (slot of each base, -1 if not built; stack of position matrices), replaced
        # as one pair under the lock, so concurrent coders (a loaded model is shared) never see a
        # slot without its matrix.
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def positions(self, base: int, width: int) -> np.ndarray:
        """``(width, width + 1)``: row ``s`` is P(next nonzero at k | after s), column ``width`` "none"."""
        p = self.p_zero[base:base + width]
        m = np.zeros((width, width + 1))
        for s in range(width):
            run = np.cumprod(p[s:])  # Π_{s ≤ j ≤ k} p_j
            m[s, s] = 1.0 - p[s]
            m[s, s + 1:width] = (1.0 - p[s + 1:]) * run[:-1]
            m[s, width] = run[-1]
        return m

    def position_probs(self, bases: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
        """``(n, width + 1)``: the position model of each block (``bases``) after ``starts``."""
        if bases.size == 0:
            return np.zeros((0, width + 1))
        entry = self._cache.get(width)
        if entry is None or (entry[0][bases] < 0).any():
            with self._lock:
                slots, stack = self._cache.get(width) or (np.full(self.tables.num_tables, -1, dtype=np.int64),
                                                          np.zeros((0, width, width + 1)))
                new = np.unique(bases[slots[bases] < 0])
                if new.size:
                    stack = np.concatenate([stack] + [self.positions(int(b), width)[None] for b in new])
                    slots = slots.copy()
                    slots[new] = stack.shape[0] - new.size + np.arange(new.size)
                    self._cache[width] = (slots, stack)
                entry = self._cache[width]
        slots, stack = entry
        return stack[slots[bases], starts]

    def check_row(self, bases: np.ndarray, width: int) -> np.ndarray:
        bases = np.asarray(bases, dtype=np.int64).reshape(-1)
        if bases.size and (bases.min() < 0 or bases.max() + width > self.tables.num_tables):
            raise ConfigurationError(f"block tables base..base+{width - 1} fall outside the {self.tables.num_tables} tables")
        return bases


def _encode_row(encoder, family, models: BlockModels, values: np.ndarray, bases: np.ndarray) -> None:
    C, D = values.shape
    tables = bases[:, None] + np.arange(D)
    sym = models.tables.symbols(values.reshape(-1), tables.reshape(-1))[0].reshape(C, D)
    nonzero = sym != models.zero[tables]
    block, pos = np.nonzero(nonzero)  # block-major, positions increasing
    counts = nonzero.sum(1)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    starts = np.zeros(C, dtype=np.int64)
    open_ = np.ones(C, dtype=bool) if D else np.zeros(C, dtype=bool)
    r = 0
    while open_.any():
        blocks = np.flatnonzero(open_)
        has = counts[blocks] > r
        symbols = np.full(blocks.size, D, dtype=np.int64)
        symbols[has] = pos[first[blocks[has]] + r]
        probs = models.position_probs(bases[blocks], starts[blocks], D)
        encoder.encode(symbols.astype(np.int32), family, probs)
        starts[blocks] = symbols + 1
        open_[blocks] = has & (symbols + 1 < D)
        r += 1
    t, v = tables[block, pos], sym[block, pos].astype(np.int32)
    for a in range(0, t.size, _VALUES_PER_CALL):
        encoder.encode(v[a:a + _VALUES_PER_CALL], family, models.values[t[a:a + _VALUES_PER_CALL]])


def encode_rows(rows, models: BlockModels) -> bytes:
    """Range-code rows of blocks: ``rows`` yields ``(values (C, D) int, bases (C,) int)``."""
    encoder = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Categorical(perfect=False)
    for values, bases in rows:
        values = np.asarray(values, dtype=np.int64)
        if values.ndim != 2:
            raise ConfigurationError(f"a row of blocks must be (blocks, D), got shape {values.shape}")
        _encode_row(encoder, family, models, values, models.check_row(bases, values.shape[1]))
    words = encoder.get_compressed()
    out = bytearray()
    put_varint(out, int(words.size))
    return bytes(out) + words.astype("<u4", copy=False).tobytes()


class BlockDecoder:
    """Decodes :func:`encode_rows` data row by row; :meth:`finish` checks the stream is canonical."""

    def __init__(self, data, models: BlockModels):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ConfigurationError(f"data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        n_words, used = read_varint(data, 0, "word count")
        if 4 * n_words != len(data) - used:
            raise FormatError(f"block-coded data: {n_words} words announced, {len(data) - used} bytes present")
        self.words = np.frombuffer(data, dtype="<u4", offset=used, count=n_words).astype(np.uint32)
        self.models = models
        self._decoder = constriction.stream.queue.RangeDecoder(self.words)
        self._family = constriction.stream.model.Categorical(perfect=False)
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []

    def _decode(self, probs: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._decoder.decode(self._family, probs), dtype=np.int64)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # constriction errors, including Rust panics (BaseException)
            raise FormatError(f"corrupt block-coded data ({type(exc).__name__}: {exc})") from None

    def decode_row(self, bases, width: int) -> np.ndarray:
        """The next row's values ``(len(bases), width)`` (int64), block ``i`` under tables ``bases[i] + j``."""
        models = self.models
        bases = models.check_row(bases, width)
        C, D = bases.size, width
        starts = np.zeros(C, dtype=np.int64)
        open_ = np.ones(C, dtype=bool) if D else np.zeros(C, dtype=bool)
        nonzero = np.zeros((C, D), dtype=bool)
        while open_.any():
            blocks = np.flatnonzero(open_)
            got = self._decode(models.position_probs(bases[blocks], starts[blocks], D))
            if got.size != blocks.size or (got < starts[blocks]).any() or (got > D).any():
                raise FormatError("block-coded data: nonzero positions out of order")
            has = got < D
            nonzero[blocks[has], got[has]] = True
            starts[blocks] = got + 1
            open_[blocks] = has & (got + 1 < D)
        tables = bases[:, None] + np.arange(D)
        sym = models.zero[tables].copy()
        block, pos = np.nonzero(nonzero)
        t = tables[block, pos]
        for a in range(0, t.size, _VALUES_PER_CALL):
            part = t[a:a + _VALUES_PER_CALL]
            got = self._decode(models.values[part])
            if got.size != part.size or (got < 0).any() or (got >= models.tables.alphabet_size).any() \
                    or (got == models.zero[part]).any():
                raise FormatError("block-coded data: a nonzero value decodes to zero or out of range")
            sym[block[a:a + part.size], pos[a:a + part.size]] = got
        values = sym + models.tables.offsets[tables]
        self._rows.append((values, bases))
        return values

    def finish(self) -> None:
        """Raise :class:`FormatError` unless the stored words are exactly the encoding of what was decoded."""
        data = encode_rows(self._rows, self.models)
        _, used = read_varint(data, 0, "word count")
        if not np.array_equal(np.frombuffer(data, dtype="<u4", offset=used), self.words):
            raise FormatError("block-coded data is not the canonical encoding of its values")
