"""Adaptive categorical models: symbol probabilities learnt while coding, with no stored table.

A stream of ``n`` symbols in ``[0, A)`` is cut into chunks ending at symbols 1, 2, 4, …, 64 and
then every :data:`CHUNK` symbols. Each chunk is range-coded with one model built from the counts
``c`` of the ``m`` symbols before it::

    p_j = (K·c_j + 1) / (K·m + A),   K = PRIOR_WEIGHT

(a prior of ``1/K`` of a symbol on every value). A stored histogram costs about a varint per
distinct value, which on the small streams of a fractal file (a few hundred to a few thousand
symbols, alphabets of 2–257 values) is 5–10 % of the stream; learning costs less there
(measured in docs/pifs.md). Chunks, not single symbols, keep the coder vectorised: one model
per chunk, a few hundred per file.

The probabilities are float64 quotients of integers below 2**53, correctly rounded on every
machine, and ``constriction`` quantises them deterministically, so the encoder and the decoder
build bit-identical models.
"""

from __future__ import annotations

import numpy as np

#: Largest alphabet of an adaptive stream (every chunk builds a model over the whole alphabet).
MAX_ADAPTIVE_ALPHABET = 4096
#: Symbols per chunk once the doubling start is over.
CHUNK = 64
#: ``K``: every value starts with ``1/K`` of a count.
PRIOR_WEIGHT = 10


def chunk_ends(n: int) -> list[int]:
    """Where the chunks of an ``n``-symbol stream end: 1, 2, 4, …, CHUNK, then every CHUNK, then n."""
    ends, end = [], 1
    while end < n:
        ends.append(end)
        end = end * 2 if end < CHUNK else end + CHUNK
    if n:
        ends.append(n)
    return ends


def chunk_probabilities(counts: np.ndarray) -> np.ndarray:
    """The model of the next chunk from the integer ``counts`` (one per value) seen so far."""
    counts = counts.astype(np.float64)
    return (PRIOR_WEIGHT * counts + 1.0) / (PRIOR_WEIGHT * counts.sum() + counts.size)


def chunk_spans(n: int) -> list[tuple[int, int]]:
    """``(start, end)`` of every chunk of an ``n``-symbol stream, in coding order."""
    ends = chunk_ends(n)
    return list(zip([0] + ends[:-1], ends))


class LearntCounts:
    """What an adaptive stream has seen so far: the model of its next chunk, updated chunk by chunk
    (the encoder, the decoder and the cost estimate walk a stream with the same one)."""

    def __init__(self, alphabet: int):
        self.counts = np.zeros(alphabet, dtype=np.int64)

    def probabilities(self) -> np.ndarray:
        return chunk_probabilities(self.counts)

    def add(self, part: np.ndarray) -> None:
        self.counts += np.bincount(part, minlength=self.counts.size)


def adaptive_cost_bits(symbols: np.ndarray, alphabet: int) -> float:
    """Ideal code length of ``symbols`` (int, in ``[0, alphabet)``) under the chunked model."""
    learnt, bits = LearntCounts(alphabet), 0.0
    for start, end in chunk_spans(int(symbols.size)):
        part = symbols[start:end]
        bits -= float(np.log2(learnt.probabilities()[part]).sum())
        learnt.add(part)
    return bits
