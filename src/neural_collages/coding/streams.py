"""Entropy coding of integer symbol streams: many streams in, one compact byte string out.

The codecs of this project describe a compressed image as a few streams of small integers
(quadtree split flags, quantised scales, isometries, domain indices, DPCM residuals, ...).
:func:`encode_streams` packs such streams into one byte string with ``constriction``'s range
coder, and :func:`decode_streams` turns it back into the same integers, bit-exactly on every
machine. :func:`estimate_bits` and :func:`stream_cost_bits` give the ideal code length that the
codecs use for rate decisions and reports.

## Streams

A stream is described by a :class:`StreamSpec` ``(name, kind, alphabet, offset)``. The caller
gives the *same* specs to the encoder and the decoder; they are not stored. A stream's values
``v`` are coded as symbols ``s = v - offset`` that must lie in ``[0, alphabet)``:

* ``"categorical"`` (``1 ≤ alphabet ≤ 65536``): the histogram of the stream is stored (see
  below) and the symbols are coded with the model ``counts / n`` -- the stream's own empirical
  distribution. Only the *support* (symbols with a nonzero count, in increasing order) takes
  part: the coder codes each symbol's rank in the support with
  ``Categorical(counts[support] / n, perfect=False)``, probabilities computed in float64 from
  the stored integers. A stream with a single distinct symbol costs no coded bits at all.
* ``"adaptive"`` (``1 ≤ alphabet ≤ 4096``): no model is stored; the symbols are coded in chunks,
  each with a model learnt from the counts of the symbols before it
  (:mod:`neural_collages.coding.adaptive`). Cheaper than ``"categorical"`` for short streams,
  whose stored histogram is a large share of their size.
* ``"uniform"`` (``1 ≤ alphabet ≤ 2**31 - 1``): no model is stored. ``alphabet == 1`` codes
  nothing; ``2 ≤ alphabet ≤ 4096`` uses ``Uniform(alphabet)``; a larger alphabet is coded as
  two digits, ``s = hi * L + lo`` with ``L = 2**(bit_length(alphabet - 1) - 12)``, ``lo`` coded
  with ``Uniform(L)`` and ``hi`` with ``Uniform(ceil(alphabet / L))`` (``2048 < that ≤ 4096``).
  (``constriction``'s ``Uniform`` quantises to 24-bit probabilities and gives the last symbol
  all the rounding slack, which is far from uniform for large sizes; the split keeps the
  excess under 0.002 bit per symbol.)

All coded symbols of all streams go through ONE ``constriction.stream.queue.RangeEncoder``, in
spec order; within a split uniform stream all ``hi`` digits come before all ``lo`` digits.

## Byte layout (format version 1)

``varint`` is unsigned LEB128 (7 bits per byte, least significant group first, high bit set on
every byte but the last), at most 9 bytes, minimal (no trailing ``0x80 ... 0x00`` padding).

=====================  =========================================================================
field                  meaning
=====================  =========================================================================
``b"NE"``              magic (2 bytes)
``0x01``               format version (1 byte)
varint ``S``           number of streams; must equal ``len(specs)``
per stream, in order:
  varint ``n``         number of symbols of the stream
  model table          only for a categorical stream with ``n > 0`` (see below)
varint ``W``           number of 32-bit words of range-coded data
``4 W`` bytes          the words, each little-endian; the data ends exactly here
=====================  =========================================================================

**Model table** of a categorical stream with ``n > 0`` symbols and ``K`` distinct symbols
(``1 ≤ K ≤ min(n, alphabet)``):

* varint ``(K - 1) * 2 + mode``;
* the support, by ``mode``: ``0`` = *gap list*, ``K`` varints: the first symbol, then for each
  further symbol the number of absent symbols since the previous one (a zero-run length);
  ``1`` = *bitmap*, ``ceil(alphabet / 8)`` bytes, bit ``j % 8`` (LSB first) of byte ``j // 8``
  set iff symbol ``j`` occurs, padding bits zero. The encoder takes the shorter of the two (the
  gap list on a tie) and the decoder rejects the other, so every histogram has exactly one
  encoding;
* ``K`` varints ``count - 1``, in support order (so every stored count is at least 1).

The table costs about one varint per distinct symbol plus the support (a few bytes); a
categorical alphabet much larger than the number of symbols is better coded ``"uniform"``.
Measured (skewed 31-symbol stream, one stream per blob, all headers included): 10 000 symbols
-> 3 822 bytes for an ideal ``stream_cost_bits / 8`` of 3 774 (+48 bytes); 100 000 symbols ->
38 012 bytes for 37 945 (+67 bytes). A uniform stream of 100 000 domain indices below 10**6
costs 249 162 bytes for an ideal 249 145.

## Limits and checks on decoding

:func:`decode_streams` treats its input as hostile and raises :class:`FormatError` -- never
another exception -- for every byte string that is not exactly what this module's encoder
writes for some values of the given specs (the format is canonical:
``encode_streams(specs, decode_streams(specs, data, m)) == data`` whenever decoding succeeds).
It checks: the magic and version; the stream count against ``len(specs)``; that varints are
minimal and at most 9 bytes; the running total of symbol counts against the caller's
``max_symbols`` (as each ``n`` is read, before anything is allocated); ``K`` against ``n`` and
the alphabet; support symbols against the alphabet; that the support uses the canonical
encoding; that the counts sum to ``n``; that the word count matches the remaining data exactly
(truncation, trailing bytes); that the words are not fewer than the announced symbols need
(ideal bits of the stored histograms, ``log2(alphabet) - 1.5`` bits per uniform symbol, minus
some slack -- so a crafted header cannot make it decode ``max_symbols`` symbols out of a handful
of bytes; adaptive streams have no such bound and are limited by ``max_symbols`` alone); that
split uniform values lie inside their alphabet; that every decoded categorical
stream has exactly the stored histogram; and that re-encoding the decoded symbols gives back
exactly the stored words. Exceptions raised inside ``constriction`` (including Rust panics)
become :class:`FormatError`. Time and memory are ``O(max_symbols + len(data))``: nothing read
from the data sizes an allocation or a loop beyond that.

There is no checksum: a corruption that happens to turn one valid encoding into another -- a
changed zero-run length in a support list, or flipped bits among power-of-two uniform digits,
which the range coder stores almost verbatim -- decodes to other values. Byte-level integrity is
the container's CRC's job; the caller validates what the symbols mean.

Bad *arguments* -- invalid specs, values outside a stream's alphabet, non-integer or
multi-dimensional arrays, missing or unknown stream names, a negative ``max_symbols`` -- raise
:class:`ConfigurationError`.

The bit-exactness of the format rests on the models being built only from integers stored in
the data (float64 division is correctly rounded everywhere) and on ``constriction``'s
deterministic, platform-independent model quantisation (``perfect=False``) and range coder
(32-bit words, 24-bit probabilities -- its defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import constriction
import numpy as np

from ..checks import is_int
from ..errors import ConfigurationError, FormatError
from .adaptive import MAX_ADAPTIVE_ALPHABET, LearntCounts, adaptive_cost_bits, chunk_spans
from .varints import ByteReader, put_varint, varint_length

__all__ = [
    "StreamSpec",
    "encode_streams",
    "decode_streams",
    "estimate_bits",
    "stream_cost_bits",
    "MAGIC",
    "FORMAT_VERSION",
    "MAX_CATEGORICAL_ALPHABET",
    "MAX_UNIFORM_ALPHABET",
]

MAGIC = b"NE"
FORMAT_VERSION = 1
KINDS = ("categorical", "adaptive", "uniform")
MAX_CATEGORICAL_ALPHABET = 65536
MAX_UNIFORM_ALPHABET = 2**31 - 1
MAX_OFFSET = 2**62
_SINGLE_UNIFORM_MAX = 4096  # larger uniform alphabets are coded as two digits (see docstring)
_SLACK_BITS = 160  # range coder state (64 bits) + flush + rounding, for the minimum-size check


def _cdr():
    # constriction exposes its submodules as attributes only (no importable constriction.stream).
    stream = constriction.stream
    return stream.queue.RangeEncoder, stream.queue.RangeDecoder, stream.model


# --------------------------------------------------------------------------------------------
# Specs and argument validation


@dataclass(frozen=True)
class StreamSpec:
    """One stream: ``name``, ``kind`` (``"categorical"`` or ``"uniform"``), ``alphabet`` (the
    number of symbols: ≤ 65536 for categorical, ≤ 2**31-1 for uniform) and ``offset`` (values
    are coded as ``value - offset``, so signed residuals can be given directly).

    Invalid fields raise :class:`ConfigurationError` at construction.
    """

    name: str
    kind: str
    alphabet: int
    offset: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError(f"stream name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise ConfigurationError(
                f"stream {self.name!r}: unknown kind {self.kind!r} (expected one of {KINDS})"
            )
        if not is_int(self.alphabet):
            raise ConfigurationError(f"stream {self.name!r}: alphabet must be an integer")
        if not is_int(self.offset):
            raise ConfigurationError(f"stream {self.name!r}: offset must be an integer")
        limit = {"categorical": MAX_CATEGORICAL_ALPHABET, "adaptive": MAX_ADAPTIVE_ALPHABET}.get(self.kind,
                                                                                              MAX_UNIFORM_ALPHABET)
        if not 1 <= int(self.alphabet) <= limit:
            raise ConfigurationError(
                f"stream {self.name!r}: {self.kind} alphabet must be in [1, {limit}], "
                f"got {self.alphabet}"
            )
        if not -MAX_OFFSET <= int(self.offset) <= MAX_OFFSET:
            raise ConfigurationError(f"stream {self.name!r}: offset {self.offset} out of range")
        object.__setattr__(self, "alphabet", int(self.alphabet))
        object.__setattr__(self, "offset", int(self.offset))


def _check_specs(specs: Sequence[StreamSpec]) -> list[StreamSpec]:
    specs = list(specs)
    names = set()
    for spec in specs:
        if not isinstance(spec, StreamSpec):
            raise ConfigurationError(f"expected StreamSpec, got {type(spec).__name__}")
        if spec.name in names:
            raise ConfigurationError(f"duplicate stream name {spec.name!r}")
        names.add(spec.name)
    return specs


def _symbols(spec: StreamSpec, values: object) -> np.ndarray:
    """``values - offset`` as int64, checked to be a 1-D integer array inside the alphabet."""
    try:
        arr = np.asarray(values)
    except Exception as exc:  # ragged lists and the like
        raise ConfigurationError(f"stream {spec.name!r}: values are not an array ({exc})") from None
    if arr.ndim != 1:
        raise ConfigurationError(f"stream {spec.name!r}: values must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iub":
        raise ConfigurationError(f"stream {spec.name!r}: values must be integers, got {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo - spec.offset < 0 or hi - spec.offset >= spec.alphabet:
        raise ConfigurationError(
            f"stream {spec.name!r}: values in [{lo}, {hi}] outside "
            f"[{spec.offset}, {spec.offset + spec.alphabet - 1}]"
        )
    # In range, so every value fits in int64 (|offset| <= 2**62, alphabet < 2**31).
    return arr.astype(np.int64) - spec.offset


# --------------------------------------------------------------------------------------------
# Cost estimates


def estimate_bits(counts) -> float:
    """Ideal code length in bits of a histogram: ``Σ −n_i log2(n_i / N)`` with ``N = Σ n_i``.

    ``counts`` is any array-like of non-negative finite numbers (zeros are ignored); an empty or
    all-zero histogram costs 0 bits. This excludes the cost of storing the histogram itself.
    """
    c = np.asarray(counts, dtype=np.float64).ravel()
    if c.size and (not np.all(np.isfinite(c)) or c.min() < 0):
        raise ConfigurationError("counts must be non-negative and finite")
    c = c[c > 0]
    total = c.sum()
    if c.size <= 1:
        return 0.0
    return float(np.sum(c * (np.log2(total) - np.log2(c))))


def stream_cost_bits(spec: StreamSpec, values) -> float:
    """Ideal cost in bits of one stream: its histogram's :func:`estimate_bits` (categorical) or
    ``n · log2(alphabet)`` (uniform). Values are validated as in :func:`encode_streams`."""
    _check_specs([spec])
    sym = _symbols(spec, values)
    if spec.kind == "categorical":
        return estimate_bits(np.bincount(sym, minlength=spec.alphabet))
    if spec.kind == "adaptive":
        return adaptive_cost_bits(sym, spec.alphabet)
    return float(sym.size * math.log2(spec.alphabet))


# --------------------------------------------------------------------------------------------
# Tables


def _gap_list(support: np.ndarray) -> list[int]:
    gaps = np.diff(support, prepend=-1) - 1
    return [int(g) for g in gaps]


def _bitmap_len(alphabet: int) -> int:
    return (alphabet + 7) // 8


def _use_bitmap(gaps: list[int], alphabet: int) -> bool:
    return _bitmap_len(alphabet) < sum(varint_length(g) for g in gaps)


# --------------------------------------------------------------------------------------------
# Coding plans: what goes through the range coder for one stream


def _uniform_digits(alphabet: int) -> tuple[int, int]:
    """``(L, H)`` of the two-digit split of a large uniform alphabet (see module docstring)."""
    L = 1 << ((alphabet - 1).bit_length() - 12)
    return L, -(-alphabet // L)


def _uniform_min_bits(alphabet: int) -> float:
    """A lower bound on the coded bits per symbol of a uniform stream (the last symbol of a
    quantised Uniform(m), m ≤ 4096, has probability at most about 2/m)."""
    return max(0.0, math.log2(alphabet) - 1.5) if alphabet >= 2 else 0.0


# --------------------------------------------------------------------------------------------
# Encoding


def encode_streams(specs: Sequence[StreamSpec], values: Mapping[str, np.ndarray]) -> bytes:
    """Range-code the streams ``values[spec.name]`` (1-D integer arrays, possibly empty) in spec
    order into one byte string (layout in the module docstring).

    Raises :class:`ConfigurationError` for invalid specs, duplicate names, missing or unknown
    names in ``values``, and values that are not 1-D integer arrays inside
    ``[offset, offset + alphabet)``.
    """
    RangeEncoder, _, model = _cdr()
    specs = _check_specs(specs)
    if not isinstance(values, Mapping):
        raise ConfigurationError("values must be a mapping from stream name to array")
    unknown = set(values) - {s.name for s in specs}
    if unknown:
        raise ConfigurationError(f"values for unknown streams: {sorted(map(str, unknown))}")
    header = bytearray(MAGIC)
    header.append(FORMAT_VERSION)
    put_varint(header, len(specs))
    encoder = RangeEncoder()
    for spec in specs:
        if spec.name not in values:
            raise ConfigurationError(f"no values for stream {spec.name!r}")
        sym = _symbols(spec, values[spec.name])
        n = int(sym.size)
        put_varint(header, n)
        if n == 0:
            continue
        if spec.kind == "categorical":
            counts = np.bincount(sym, minlength=spec.alphabet)
            support = np.flatnonzero(counts)
            k = int(support.size)
            gaps = _gap_list(support)
            bitmap = _use_bitmap(gaps, spec.alphabet)
            put_varint(header, (k - 1) * 2 + int(bitmap))
            if bitmap:
                bits = np.zeros(_bitmap_len(spec.alphabet) * 8, dtype=np.uint8)
                bits[support] = 1
                header += np.packbits(bits, bitorder="little").tobytes()
            else:
                for g in gaps:
                    put_varint(header, g)
            kept = counts[support]
            for c in kept:
                put_varint(header, int(c) - 1)
            if k >= 2:
                rank = np.zeros(spec.alphabet, dtype=np.int32)
                rank[support] = np.arange(k, dtype=np.int32)
                probs = kept.astype(np.float64) / float(n)
                encoder.encode(rank[sym], model.Categorical(probs, perfect=False))
        elif spec.kind == "adaptive":
            if spec.alphabet >= 2:
                learnt = LearntCounts(spec.alphabet)
                for start, end in chunk_spans(n):
                    part = sym[start:end]
                    encoder.encode(part.astype(np.int32), model.Categorical(learnt.probabilities(), perfect=False))
                    learnt.add(part)
        elif spec.alphabet >= 2:
            if spec.alphabet <= _SINGLE_UNIFORM_MAX:
                encoder.encode(sym.astype(np.int32), model.Uniform(spec.alphabet))
            else:
                L, H = _uniform_digits(spec.alphabet)
                encoder.encode((sym // L).astype(np.int32), model.Uniform(H))
                encoder.encode((sym % L).astype(np.int32), model.Uniform(L))
    words = encoder.get_compressed().astype("<u4")
    put_varint(header, int(words.size))
    return bytes(header) + words.tobytes()


# --------------------------------------------------------------------------------------------
# Decoding


def decode_streams(specs: Sequence[StreamSpec], data: bytes, max_symbols: int) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_streams` for the same ``specs``: ``{name: int64 values}``.

    ``max_symbols`` bounds the total number of symbols accepted (and so every allocation).
    Raises :class:`FormatError` for any byte string that is not a valid encoding (see the module
    docstring for the checks), :class:`ConfigurationError` for invalid specs or ``max_symbols``.
    """
    specs = _check_specs(specs)
    if not is_int(max_symbols) or max_symbols < 0:
        raise ConfigurationError(f"max_symbols must be a non-negative integer, got {max_symbols!r}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ConfigurationError(f"data must be bytes, got {type(data).__name__}")
    try:
        return _decode(specs, bytes(data), int(max_symbols))
    except FormatError:
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # constriction errors, including Rust panics (BaseException)
        raise FormatError(f"corrupt entropy-coded data ({type(exc).__name__}: {exc})") from None


def _decode(specs: list[StreamSpec], data: bytes, max_symbols: int) -> dict[str, np.ndarray]:
    RangeEncoder, RangeDecoder, model = _cdr()
    r = ByteReader(data)
    if r.take(len(MAGIC), "magic") != MAGIC:
        raise FormatError("not entropy-coded data (bad magic)")
    version = r.take(1, "version")[0]
    if version != FORMAT_VERSION:
        raise FormatError(f"unsupported entropy format version {version} (this build reads 1)")
    n_streams = r.varint("stream count", len(specs))
    if n_streams != len(specs):
        raise FormatError(f"data has {n_streams} streams, expected {len(specs)}")

    # Pass 1: the header. plan[i] = (spec, n, kind-specific info); nothing is allocated beyond
    # the tables, which the input length bounds.
    plan = []
    total = 0
    min_bits = 0.0
    for spec in specs:
        n = r.varint(f"symbol count of {spec.name!r}", max_symbols - total)
        total += n
        if n == 0:
            plan.append((spec, 0, None))
            continue
        if spec.kind == "uniform":
            min_bits += n * _uniform_min_bits(spec.alphabet)
            plan.append((spec, n, None))
            continue
        if spec.kind == "adaptive":  # no table, and a learnt model has no useful lower bound on bits
            plan.append((spec, n, None))
            continue
        head = r.varint(f"table head of {spec.name!r}", 2 * min(n, spec.alphabet) - 1)
        k, bitmap = head // 2 + 1, bool(head & 1)
        if bitmap:
            raw = np.frombuffer(r.take(_bitmap_len(spec.alphabet), "bitmap"), dtype=np.uint8)
            bits = np.unpackbits(raw, bitorder="little")
            if bits[spec.alphabet :].any():
                raise FormatError(f"stream {spec.name!r}: bitmap padding bits set")
            support = np.flatnonzero(bits)
            if support.size != k:
                raise FormatError(f"stream {spec.name!r}: bitmap has {support.size} symbols, not {k}")
            gaps = _gap_list(support)
        else:
            gaps, sym = [], -1
            for _ in range(k):
                g = r.varint(f"support gap of {spec.name!r}", spec.alphabet - 2 - sym)
                gaps.append(g)
                sym += g + 1
            support = np.cumsum(np.asarray(gaps, dtype=np.int64) + 1) - 1
        if _use_bitmap(gaps, spec.alphabet) != bitmap:
            raise FormatError(f"stream {spec.name!r}: non-canonical support encoding")
        counts = np.empty(k, dtype=np.int64)
        left = n
        for i in range(k):
            c = r.varint(f"count of {spec.name!r}", left - 1) + 1
            counts[i] = c
            left -= c
        if left != 0:
            raise FormatError(f"stream {spec.name!r}: histogram sums to {n - left}, not {n}")
        min_bits += estimate_bits(counts)
        plan.append((spec, n, (support, counts)))

    n_words = r.varint("word count", len(data) // 4)
    if r.remaining() < 4 * n_words:
        raise FormatError(f"truncated entropy-coded data ({n_words} words announced, "
                          f"{r.remaining()} bytes left)")
    if r.remaining() > 4 * n_words:
        raise FormatError(f"{r.remaining() - 4 * n_words} trailing bytes after the coded words")
    if 32 * n_words < min_bits * (1 - 1e-9) - _SLACK_BITS:
        raise FormatError(
            f"{n_words} coded words cannot hold the {min_bits:.0f} bits the header announces"
        )
    words = np.frombuffer(r.take(4 * n_words, "words"), dtype="<u4").astype(np.uint32)

    # Pass 2: range decoding, then the integrity checks.
    decoder = RangeDecoder(words)
    coded = []  # (symbols, model) in coding order, to re-encode
    out: dict[str, np.ndarray] = {}
    for spec, n, info in plan:
        if n == 0:
            out[spec.name] = np.zeros(0, dtype=np.int64)
            continue
        if spec.kind == "categorical":
            support, counts = info
            if support.size == 1:
                sym = np.full(n, support[0], dtype=np.int64)
            else:
                m = model.Categorical(counts.astype(np.float64) / float(n), perfect=False)
                ranks = np.asarray(decoder.decode(m, n))
                coded.append((ranks, m))
                if ranks.shape != (n,) or ranks.min() < 0 or ranks.max() >= support.size:
                    raise FormatError(f"stream {spec.name!r}: decoded symbols out of range")
                if not np.array_equal(np.bincount(ranks, minlength=support.size), counts):
                    raise FormatError(f"stream {spec.name!r}: decoded histogram differs from stored")
                sym = support[ranks]
        elif spec.kind == "adaptive":
            sym = np.zeros(n, dtype=np.int64)
            if spec.alphabet >= 2:
                learnt = LearntCounts(spec.alphabet)
                for start, end in chunk_spans(n):
                    m = model.Categorical(learnt.probabilities(), perfect=False)
                    part = np.asarray(decoder.decode(m, end - start))
                    coded.append((part, m))
                    if part.shape != (end - start,) or part.min() < 0 or part.max() >= spec.alphabet:
                        raise FormatError(f"stream {spec.name!r}: decoded symbols out of range")
                    sym[start:end] = part
                    learnt.add(part)
        elif spec.alphabet == 1:
            sym = np.zeros(n, dtype=np.int64)
        elif spec.alphabet <= _SINGLE_UNIFORM_MAX:
            m = model.Uniform(spec.alphabet)
            digits = np.asarray(decoder.decode(m, n))
            coded.append((digits, m))
            sym = digits.astype(np.int64)
        else:
            L, H = _uniform_digits(spec.alphabet)
            mh, ml = model.Uniform(H), model.Uniform(L)
            hi = np.asarray(decoder.decode(mh, n))
            coded.append((hi, mh))
            lo = np.asarray(decoder.decode(ml, n))
            coded.append((lo, ml))
            sym = hi.astype(np.int64) * L + lo
        if sym.shape != (n,) or sym.min() < 0 or sym.max() >= spec.alphabet:
            raise FormatError(f"stream {spec.name!r}: decoded symbols outside the alphabet")
        out[spec.name] = sym + spec.offset

    check = RangeEncoder()
    for symbols, m in coded:
        check.encode(symbols.astype(np.int32), m)
    if not np.array_equal(check.get_compressed(), words):
        raise FormatError("coded words do not match the decoded symbols (corrupt payload)")
    return out
