"""Tests of coding under fixed integer frequency tables (neural_collages.coding.table_coding)."""

from __future__ import annotations

import random
import time

import constriction
import numpy as np
import pytest

from neural_collages.errors import ConfigurationError, FormatError
from neural_collages.coding.table_coding import (
    PRECISION_BITS,
    FrequencyTables,
    cost_bits,
    decode,
    encode,
    quantise_pmf,
)

SEED = 20240611
TOTAL = 1 << PRECISION_BITS


def _laplace_pmfs(rng: np.random.Generator, t: int, k: int, lo: float = 0.7, hi: float = 12.0):
    x = np.arange(k) - (k - 1) / 2
    scales = rng.uniform(lo, hi, t)
    centres = rng.uniform(-2, 2, t)
    return np.exp(-np.abs(x[None, :] - centres[:, None]) / scales[:, None])


def _random_tables(rng: np.random.Generator, t: int, k: int) -> FrequencyTables:
    pmf = rng.gamma(0.5, size=(t, k)) + 1e-3
    offsets = rng.integers(-1000, 1000, t)
    return FrequencyTables(quantise_pmf(pmf), offsets)


def _sample(rng: np.random.Generator, tables: FrequencyTables, table_index: np.ndarray):
    """Values drawn from each symbol's table distribution."""
    cdf = np.cumsum(tables.counts, axis=1)
    u = rng.integers(0, TOTAL, table_index.size)
    sym = np.empty(table_index.size, dtype=np.int64)
    for t in range(tables.num_tables):
        m = table_index == t
        sym[m] = np.searchsorted(cdf[t], u[m], side="right")
    return sym + tables.offsets[table_index]


def _kl_bits(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    p = p / p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p / q), 0.0)
    return terms.sum(axis=1)


# --------------------------------------------------------------------------------------------
# quantise_pmf


@pytest.mark.parametrize("k", [2, 63, 511])
def test_quantise_rows_sum_min_and_close(k):
    rng = np.random.default_rng(SEED + k)
    pmf = _laplace_pmfs(rng, 20, k)
    counts = quantise_pmf(pmf)
    assert counts.dtype == np.int32 and counts.shape == pmf.shape
    assert np.all(counts >= 1)
    assert np.all(counts.sum(axis=1) == TOTAL)
    kl = _kl_bits(pmf, counts / TOTAL)
    # The only real loss is the one-count floor of the tiny tails (≤ K / 2**16 of the mass).
    assert kl.max() < 1e-4 + 1.5 * k / TOTAL, kl.max()
    # Smooth, not-too-peaked pmfs quantise almost losslessly.
    smooth = _laplace_pmfs(rng, 10, 63, lo=8.0, hi=20.0)
    assert _kl_bits(smooth, quantise_pmf(smooth) / TOTAL).max() < 2e-5


def test_quantise_deterministic_and_exact_cases():
    rng = np.random.default_rng(SEED)
    pmf = rng.random((7, 33))
    a, b = quantise_pmf(pmf), quantise_pmf(pmf.copy())
    assert np.array_equal(a, b)
    # Scaling a row does not change its quantisation (rows need not be normalised).
    assert np.array_equal(quantise_pmf(pmf * 3.0), a)
    # Uniform rows split exactly; zero probabilities still get one count.
    assert np.array_equal(quantise_pmf(np.ones(4)), np.full(4, TOTAL // 4))
    assert np.array_equal(quantise_pmf(np.array([1.0, 0.0, 0.0])), [TOTAL - 2, 1, 1])
    assert np.array_equal(quantise_pmf(np.array([1, 1, 1]), precision_bits=2), [2, 1, 1])
    full = quantise_pmf(np.r_[1.0, np.zeros(TOTAL - 1)])  # K = 2**16: all ones
    assert np.all(full == 1)
    # Dyadic pmfs are reproduced exactly.
    p = np.array([0.5, 0.25, 0.125, 0.125])
    assert np.array_equal(quantise_pmf(p) / TOTAL, p)


@pytest.mark.parametrize(
    "pmf, bits",
    [
        (np.ones(1), 16),
        (np.ones((2, 1)), 16),
        (np.ones(TOTAL + 1), 16),
        (np.ones(5), 2),
        (np.ones((2, 2, 2)), 16),
        (np.array([0.5, -0.1, 0.6]), 16),
        (np.array([0.5, np.nan]), 16),
        (np.array([0.5, np.inf]), 16),
        (np.zeros(3), 16),
        (np.array(["a", "b"]), 16),
        (np.ones(3), 0),
        (np.ones(3), 31),
    ],
)
def test_quantise_rejects_bad_input(pmf, bits):
    with pytest.raises(ConfigurationError):
        quantise_pmf(pmf, precision_bits=bits)


# --------------------------------------------------------------------------------------------
# FrequencyTables


def test_tables_validation():
    good = quantise_pmf(np.ones((3, 5)))
    FrequencyTables(good)
    with pytest.raises(ConfigurationError):
        FrequencyTables(good[0])  # 1-D
    with pytest.raises(ConfigurationError):
        FrequencyTables(good[:0])  # no tables
    with pytest.raises(ConfigurationError):
        FrequencyTables(good.astype(np.float64))
    bad = good.copy()
    bad[1, 0] += 1
    with pytest.raises(ConfigurationError):
        FrequencyTables(bad)  # row sum
    bad = good.copy()
    bad[2, 0] -= bad[2, 0]
    bad[2, 1] += good[2, 0]
    with pytest.raises(ConfigurationError):
        FrequencyTables(bad)  # zero count
    with pytest.raises(ConfigurationError):
        FrequencyTables(np.full((1, 1), TOTAL))  # K = 1
    with pytest.raises(ConfigurationError):
        FrequencyTables(good, offsets=[0, 1])  # wrong length
    with pytest.raises(ConfigurationError):
        FrequencyTables(good, offsets=[0.0, 1.0, 2.0])
    with pytest.raises(ConfigurationError):
        FrequencyTables(good, offsets=[0, 2**62 + 1, 0])
    tab = FrequencyTables(good, offsets=[-2, 0, 7])
    assert tab.num_tables == 3 and tab.alphabet_size == 5
    assert not tab.counts.flags.writeable and not tab.offsets.flags.writeable
    assert np.array_equal(tab.probabilities(), good / TOTAL)
    assert tab == FrequencyTables(good.astype(np.int64), offsets=np.array([-2, 0, 7]))


def test_clamp_and_bits():
    counts = quantise_pmf(np.array([[1, 1, 2, 4], [4, 2, 1, 1]], dtype=float))
    tab = FrequencyTables(counts, offsets=[-1, 10])
    values = np.array([-5, -1, 2, 3, 0, 9, 12, 13, 14, 2**62])
    ti = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    assert np.array_equal(tab.clamp(values, ti), [-1, -1, 2, 2, 0, 10, 12, 13, 13, 13])
    huge = np.array([2**64 - 1, 0], dtype=np.uint64)
    assert np.array_equal(tab.clamp(huge, [1, 0]), [13, 0])
    assert tab.clamp([], []).shape == (0,)
    clamped = tab.clamp(values, ti)
    p = counts / TOTAL
    expect = -sum(np.log2(p[t, v - [-1, 10][t]]) for v, t in zip(clamped, ti))
    assert tab.bits(clamped, ti) == pytest.approx(expect, rel=1e-12)
    assert cost_bits(clamped, ti, tab) == tab.bits(clamped, ti)
    assert tab.bits([], []) == 0.0
    with pytest.raises(ConfigurationError):
        tab.bits(values, ti)  # unclamped values are out of range
    with pytest.raises(ConfigurationError):
        tab.clamp([1.5], [0])
    with pytest.raises(ConfigurationError):
        tab.clamp([1, 2], [0])


# --------------------------------------------------------------------------------------------
# Round trips, size, format


@pytest.mark.parametrize(
    "t, k, n",
    [
        (1, 2, 0),
        (1, 2, 1),
        (3, 2, 1000),
        (5, 63, 1),
        (4, 511, 3000),
        (150, 63, 200_000),
        (2, 17, 5),
    ],
)
def test_round_trip(t, k, n):
    rng = np.random.default_rng(SEED + 7 * t + k + n)
    tab = _random_tables(rng, t, k)
    ti = rng.integers(0, t, n)
    values = rng.integers(0, k, n) + tab.offsets[ti]  # uniform values: the worst case
    data = encode(values, ti, tab)
    assert isinstance(data, bytes)
    out = decode(data, ti, tab)
    assert out.dtype == np.int64 and np.array_equal(out, values)
    # Any integer dtypes are accepted for the inputs.
    assert encode(values.astype(np.int32), ti.astype(np.uint8), tab) == data
    if n == 0:
        assert data == b"\x00"


def test_format_is_table_by_table_in_input_order():
    rng = np.random.default_rng(SEED)
    tab = _random_tables(rng, 4, 9)
    ti = rng.integers(0, 4, 500)
    ti[ti == 2] = 3  # table 2 unused
    values = _sample(rng, tab, ti)
    enc = constriction.stream.queue.RangeEncoder()
    for t in range(4):
        sel = ti == t
        if sel.any():
            model = constriction.stream.model.Categorical(tab.counts[t] / TOTAL, perfect=False)
            enc.encode((values[sel] - tab.offsets[t]).astype(np.int32), model)
    words = enc.get_compressed()
    assert words.size < 128
    assert encode(values, ti, tab) == bytes([words.size]) + words.astype("<u4").tobytes()


def test_size_close_to_ideal():
    rng = np.random.default_rng(SEED + 1)
    pmf = _laplace_pmfs(rng, 40, 63)
    tab = FrequencyTables.from_pmf(pmf, offsets=np.full(40, -31))
    n = 100_000
    ti = rng.integers(0, 40, n)
    values = _sample(rng, tab, ti)
    ideal_bytes = tab.bits(values, ti) / 8
    data = encode(values, ti, tab)
    assert len(data) <= ideal_bytes * 1.01 + 16, (len(data), ideal_bytes)
    assert len(data) >= ideal_bytes * 0.99
    assert np.array_equal(decode(data, ti, tab), values)


def test_bad_arguments():
    rng = np.random.default_rng(SEED + 2)
    tab = _random_tables(rng, 3, 8)
    ti = np.array([0, 1, 2, 1])
    values = tab.offsets[ti] + np.array([0, 7, 3, 1])
    data = encode(values, ti, tab)
    for bad_values in (values + np.array([0, 1, 0, 0]), values - np.array([0, 0, 0, 2**40])):
        with pytest.raises(ConfigurationError):
            encode(bad_values, ti, tab)
    with pytest.raises(ConfigurationError):
        encode(np.array([2**64 - 1], dtype=np.uint64), [0], tab)
    for bad_ti in (np.array([0, 1, 3, 1]), np.array([0, -1, 2, 1]), np.array([0, 1, 2])):
        with pytest.raises(ConfigurationError):
            encode(values, bad_ti, tab)
        with pytest.raises(ConfigurationError):
            decode(data, bad_ti if bad_ti.size == 4 else np.r_[bad_ti, 5], tab)
    with pytest.raises(ConfigurationError):
        encode(values.astype(float), ti, tab)
    with pytest.raises(ConfigurationError):
        encode(values.reshape(2, 2), ti.reshape(2, 2), tab)
    with pytest.raises(ConfigurationError):
        encode(values, ti, tab.counts)
    with pytest.raises(ConfigurationError):
        decode("not bytes", ti, tab)
    with pytest.raises(ConfigurationError):
        decode(data, ti.astype(float), tab)


# --------------------------------------------------------------------------------------------
# Hostile input


def test_structural_corruptions_raise_format_error():
    rng = np.random.default_rng(SEED + 3)
    tab = _random_tables(rng, 2, 16)
    ti = rng.integers(0, 2, 300)
    values = _sample(rng, tab, ti)
    data = encode(values, ti, tab)
    n_words = (len(data) - 1) // 4
    assert 0 < n_words < 128 and data[0] == n_words
    cases = [
        b"",
        data[:-1],
        data[:-4],
        data + b"\x00",
        data + b"\x00" * 4,
        bytes([data[0] + 1]) + data[1:],
        bytes([data[0] | 0x80, 0x00]) + data[1:],  # non-minimal varint
        b"\xff" * 10,
        b"\x80" * 9 + b"\x01",
        bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) + data[1:],  # 2**32-1 words announced
    ]
    for bad in cases:
        with pytest.raises(FormatError):
            decode(bad, ti, tab)
    with pytest.raises(FormatError):
        decode(b"\x00", ti, tab)  # no words for 300 symbols
    with pytest.raises(FormatError):
        decode(b"\x01\x00\x00\x00\x00", np.zeros(0, dtype=np.int64), tab)
    assert decode(b"\x00", [], tab).shape == (0,)


def test_random_mutations_raise_only_format_error():
    rng = np.random.default_rng(SEED + 4)
    pyrng = random.Random(SEED)
    tab = _random_tables(rng, 6, 63)
    ti = rng.integers(0, 6, 2000)
    values = _sample(rng, tab, ti)
    data = encode(values, ti, tab)
    rejected = accepted = 0
    worst = 0.0
    for i in range(300):
        kind = i % 5
        buf = bytearray(data)
        if kind == 0:  # bit flips
            for _ in range(pyrng.randint(1, 4)):
                pos = pyrng.randrange(len(buf))
                buf[pos] ^= 1 << pyrng.randrange(8)
        elif kind == 1:  # truncation
            buf = buf[: pyrng.randrange(len(buf))]
        elif kind == 2:  # appended bytes
            buf += bytes(pyrng.randrange(256) for _ in range(pyrng.randint(1, 9)))
        elif kind == 3:  # random bytes of a plausible length
            buf = bytearray(pyrng.randrange(256) for _ in range(pyrng.randint(0, len(data) + 8)))
        else:  # random words under a consistent header
            noise = rng.integers(0, 256, len(data) - 2, dtype=np.uint8).tobytes()
            buf = bytearray(data[:2]) + noise
        blob = bytes(buf)
        start = time.perf_counter()
        try:
            out = decode(blob, ti, tab)
        except FormatError:
            rejected += 1
        else:
            accepted += 1
            assert out.shape == values.shape
            assert encode(out, ti, tab) == blob  # only canonical encodings are accepted
        worst = max(worst, time.perf_counter() - start)
    assert rejected >= 250, (rejected, accepted)
    assert worst < 0.5


def test_coder_quantisation_matches_documented_integer_formula():
    """The module docstring's claim about constriction's 24-bit model, probed through the
    decoder: a fresh RangeDecoder over words ``[q << 8, 0]`` decodes the symbol whose bin
    contains the 24-bit quantile ``q``, so the bin edges can be read off exactly."""
    rng = np.random.default_rng(SEED + 5)
    k = 37
    counts = quantise_pmf(rng.gamma(0.3, size=k) + 1e-4)
    model = constriction.stream.model.Categorical(counts / float(TOTAL), perfect=False)

    def symbol_at(q: int) -> int:
        dec = constriction.stream.queue.RangeDecoder(np.array([q << 8, 0], dtype=np.uint32))
        return int(dec.decode(model))

    cum = np.concatenate([[0], np.cumsum(counts.astype(np.int64))])
    left = cum[:-1] * (2**24 - k) // TOTAL + np.arange(k)
    for i in range(k):
        assert symbol_at(int(left[i])) == i
        if i:
            assert symbol_at(int(left[i]) - 1) == i - 1
    assert symbol_at(2**24 - 1) == k - 1


import neural_collages.coding.table_coding as tc  # noqa: E402


def test_in_order_coding_round_trip_with_context_dependent_tables():
    rng = np.random.default_rng(5)
    pmf = rng.random((6, 31)) ** 4
    tables = tc.FrequencyTables(tc.quantise_pmf(pmf), np.full(6, -15))
    # Table of each symbol depends on the previous batch (a toy context model).
    batches = [rng.integers(-15, 16, size=50) for _ in range(8)]
    tis = [np.zeros(50, dtype=np.int64)]
    for b in batches[:-1]:
        tis.append((np.abs(b) % 6).astype(np.int64))
    data = tc.encode_in_order(np.concatenate(batches), np.concatenate(tis), tables)
    dec = tc.InOrderDecoder(data, tables, max_symbols=400)
    prev = None
    for b in batches:
        ti = np.zeros(50, dtype=np.int64) if prev is None else (np.abs(prev) % 6).astype(np.int64)
        prev = dec.decode(ti)
        np.testing.assert_array_equal(prev, b)
    dec.finish()
    ideal = tables.bits(np.concatenate(batches), np.concatenate(tis)) / 8
    assert len(data) <= ideal * 1.01 + 16


def test_in_order_decoder_rejects_hostile_data():
    tables = tc.FrequencyTables(tc.quantise_pmf(np.ones((2, 5))), np.zeros(2, dtype=np.int64))
    data = tc.encode_in_order(np.arange(5) % 5, np.zeros(5, dtype=np.int64), tables)
    with pytest.raises(FormatError):
        tc.InOrderDecoder(data[:-1], tables, 10)
    with pytest.raises(FormatError):
        tc.InOrderDecoder(data + b"\0", tables, 10)
    dec = tc.InOrderDecoder(data, tables, 4)
    with pytest.raises(FormatError):
        dec.decode(np.zeros(5, dtype=np.int64))
    rng = np.random.default_rng(0)
    for _ in range(100):
        bad = bytearray(data)
        bad[1 + int(rng.integers(len(data) - 1))] ^= 1 << int(rng.integers(8))
        dec = tc.InOrderDecoder(bytes(bad), tables, 10)
        try:
            dec.decode(np.zeros(5, dtype=np.int64))
            dec.finish()
        except FormatError:
            continue
