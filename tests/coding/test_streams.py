"""Tests of the entropy-coding layer (neural_collages.coding.streams).

The hostile-input tests build their variants here rather than with ``tests/fuzzing.py``: that
helper knows the `.clg` container layout (its ``crafted`` edits parse a container header and
fail on any other bytes), while the blobs here are bare entropy-coded payloads. The crafted
blobs are assembled with a LEB128 writer written independently of the module under test.
"""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest

from neural_collages.coding.streams import (
    StreamSpec,
    decode_streams,
    encode_streams,
    estimate_bits,
    stream_cost_bits,
)
from neural_collages.errors import ConfigurationError, FormatError

RNG_SEED = 20240607


def _skewed(rng: np.random.Generator, n: int, alphabet: int = 31, decay: float = 3.0) -> np.ndarray:
    p = np.exp(-np.arange(alphabet) / decay)
    return rng.choice(alphabet, size=n, p=p / p.sum())


def _residuals(rng: np.random.Generator, n: int, scale: float = 6.0) -> np.ndarray:
    return np.clip(np.round(rng.laplace(0.0, scale, n)), -128, 128).astype(np.int64)


def _mix(n: int, seed: int = RNG_SEED) -> tuple[list[StreamSpec], dict[str, np.ndarray]]:
    """The stream kinds a fractal codec produces, all in one call."""
    rng = np.random.default_rng(seed)
    specs = [
        StreamSpec("empty_cat", "categorical", 31),
        StreamSpec("split", "categorical", 2),
        StreamSpec("scale", "categorical", 31),
        StreamSpec("iso", "categorical", 8),
        StreamSpec("constant", "categorical", 31),
        StreamSpec("residual", "categorical", 257, offset=-128),
        StreamSpec("domain", "uniform", 10**6),
        StreamSpec("empty_uni", "uniform", 10**6),
        StreamSpec("small_uni", "uniform", 7, offset=3),
    ]
    values = {
        "empty_cat": np.zeros(0, dtype=np.int64),
        "split": (rng.random(n) < 0.3).astype(np.int64),
        "scale": _skewed(rng, n),
        "iso": rng.integers(0, 8, n),
        "constant": np.full(n, 17),
        "residual": _residuals(rng, n),
        "domain": rng.integers(0, 10**6, n),
        "empty_uni": np.zeros(0, dtype=np.int64),
        "small_uni": rng.integers(3, 10, n),
    }
    return specs, values


def _assert_same(decoded: dict, values: dict) -> None:
    assert set(decoded) == set(values)
    for name, v in values.items():
        assert decoded[name].dtype == np.int64, name
        assert decoded[name].shape == (len(v),), name
        np.testing.assert_array_equal(decoded[name], np.asarray(v, dtype=np.int64), err_msg=name)


def _round_trip(specs, values, max_symbols=None):
    data = encode_streams(specs, values)
    total = sum(len(v) for v in values.values())
    decoded = decode_streams(specs, data, total if max_symbols is None else max_symbols)
    _assert_same(decoded, values)
    return data


# ---------------------------------------------------------------------------------------------
# Round trips


def _cases():
    rng = np.random.default_rng(RNG_SEED)
    yield "no streams", [], {}
    yield "empty streams", [StreamSpec("a", "categorical", 5), StreamSpec("b", "uniform", 9)], {
        "a": [],
        "b": np.zeros(0, dtype=np.int32),
    }
    yield "zero entropy", [StreamSpec("a", "categorical", 31)], {"a": np.full(5000, 30)}
    yield "single symbol", [StreamSpec("a", "categorical", 31)], {"a": [4]}
    yield "alphabet one", [StreamSpec("a", "categorical", 1, 9), StreamSpec("b", "uniform", 1, -2)], {
        "a": np.full(10, 9),
        "b": np.full(3, -2),
    }
    yield "skewed 31", [StreamSpec("s", "categorical", 31)], {"s": _skewed(rng, 20000)}
    yield "signed residuals", [StreamSpec("r", "categorical", 257, -128)], {"r": _residuals(rng, 20000)}
    yield "residual extremes", [StreamSpec("r", "categorical", 257, -128)], {
        "r": np.array([-128, 128, 0, -128, 128, 5])
    }
    yield "uniform 1e6", [StreamSpec("d", "uniform", 10**6)], {
        "d": np.concatenate([[0, 10**6 - 1], rng.integers(0, 10**6, 20000)])
    }
    yield "uniform sizes", [StreamSpec(f"u{m}", "uniform", m) for m in (2, 3, 4096, 4097, 65537)], {
        f"u{m}": np.concatenate([[0, m - 1], rng.integers(0, m, 3000)]) for m in (2, 3, 4096, 4097, 65537)
    }
    sizes = (2, 3, 1000, 3000, 4096, 4097, 65537, 10**6, 2**31 - 1)
    yield "uniform, only the largest symbol", [StreamSpec(f"u{m}", "uniform", m) for m in sizes], {
        f"u{m}": np.full(5000, m - 1) for m in sizes
    }
    yield "extreme skew", [StreamSpec("x", "categorical", 3)], {"x": np.r_[np.zeros(200000, int), [2]]}
    yield "uniform max size", [StreamSpec("d", "uniform", 2**31 - 1, offset=-(2**30))], {
        "d": np.concatenate([[-(2**30), 2**31 - 2 - 2**30], rng.integers(-(2**30), 2**30, 2000)])
    }
    yield "flags", [StreamSpec("f", "categorical", 2)], {"f": (rng.random(30000) < 0.1).astype(np.uint8)}
    yield "bool flags", [StreamSpec("f", "categorical", 2)], {"f": rng.random(1000) < 0.5}
    yield "huge sparse alphabet", [StreamSpec("h", "categorical", 65536)], {
        "h": np.concatenate([[0, 65535], rng.integers(0, 65536, 500)])
    }
    yield "huge dense alphabet", [StreamSpec("h", "categorical", 65536)], {"h": rng.integers(0, 65536, 200000)}
    yield "large offset", [StreamSpec("o", "categorical", 4, offset=2**62)], {
        "o": np.array([2**62, 2**62 + 3, 2**62 + 1], dtype=np.int64)
    }
    yield "mix of everything", *_mix(5000)


CASES = list(_cases())


@pytest.mark.parametrize("label,specs,values", CASES, ids=[c[0] for c in CASES])
def test_round_trip(label, specs, values):
    _round_trip(specs, values)


def test_round_trip_does_not_depend_on_input_dtype_and_is_deterministic():
    specs, values = _mix(3000)
    a = encode_streams(specs, values)
    b = encode_streams(specs, {k: np.asarray(v, dtype=np.int32) for k, v in values.items()})
    c = encode_streams(specs, {k: [int(x) for x in v] for k, v in values.items()})
    d = encode_streams(list(specs), dict(reversed(list(values.items()))))
    assert a == b == c == d
    assert encode_streams(specs, values) == a


def test_decoder_accepts_bytearray_and_memoryview():
    specs, values = _mix(200)
    data = encode_streams(specs, values)
    total = sum(len(v) for v in values.values())
    _assert_same(decode_streams(specs, bytearray(data), total), values)
    _assert_same(decode_streams(specs, memoryview(data), total), values)


def test_zero_entropy_and_empty_streams_cost_only_header_bytes():
    spec = StreamSpec("c", "categorical", 31)
    small = encode_streams([spec], {"c": np.full(10, 3)})
    large = encode_streams([spec], {"c": np.full(1_000_000, 3)})
    assert len(large) <= len(small) + 4  # only the varint of n grows
    assert len(large) < 16
    assert len(encode_streams([], {})) < 8


# ---------------------------------------------------------------------------------------------
# Costs and sizes


def test_estimate_bits_matches_definition():
    assert estimate_bits([]) == 0.0
    assert estimate_bits([0, 0]) == 0.0
    assert estimate_bits([7]) == 0.0
    assert estimate_bits([5, 0, 5]) == pytest.approx(10.0)
    assert estimate_bits([1, 1, 2]) == pytest.approx(6.0)  # 1·2 + 1·2 + 2·1
    counts = np.array([3, 9, 0, 27, 1])
    n = counts.sum()
    expected = sum(-c * math.log2(c / n) for c in counts if c)
    assert estimate_bits(counts) == pytest.approx(expected)
    with pytest.raises(ConfigurationError):
        estimate_bits([3, -1])


def test_stream_cost_bits():
    cat = StreamSpec("c", "categorical", 4, offset=-1)
    assert stream_cost_bits(cat, [-1, 2, 2, -1]) == pytest.approx(4.0)
    assert stream_cost_bits(cat, []) == 0.0
    uni = StreamSpec("u", "uniform", 1000)
    assert stream_cost_bits(uni, np.arange(10)) == pytest.approx(10 * math.log2(1000))
    assert stream_cost_bits(StreamSpec("one", "uniform", 1), [0, 0]) == 0.0
    with pytest.raises(ConfigurationError):
        stream_cost_bits(cat, [3])


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_size_close_to_ideal(n):
    specs, values = _mix(n, seed=n)
    ideal_bytes = {s.name: stream_cost_bits(s, values[s.name]) / 8 for s in specs}
    for spec in specs:  # each stream alone: a few percent + a small constant (header, flush)
        size = len(encode_streams([spec], {spec.name: values[spec.name]}))
        assert size <= 1.02 * ideal_bytes[spec.name] + 64, (spec.name, size, ideal_bytes[spec.name])
        if spec.kind == "uniform":  # no model to store: within 0.1 % + a few bytes
            assert size <= 1.001 * ideal_bytes[spec.name] + 24, (spec.name, size)
    total = len(encode_streams(specs, values))
    ideal = sum(ideal_bytes.values())
    assert 0.99 * ideal <= total <= 1.02 * ideal + 64, (total, ideal)
    # A 31-symbol stream: ≈ n·entropy bits + a few dozen bytes.
    scale = StreamSpec("scale", "categorical", 31)
    size = len(encode_streams([scale], {"scale": values["scale"]}))
    assert size - ideal_bytes["scale"] <= 0.002 * ideal_bytes["scale"] + 64


# ---------------------------------------------------------------------------------------------
# Bad arguments


def test_bad_arguments_raise_configuration_error():
    cat = StreamSpec("c", "categorical", 31)
    res = StreamSpec("r", "categorical", 257, offset=-128)
    cases = [
        lambda: encode_streams([cat], {"c": [31]}),
        lambda: encode_streams([cat], {"c": [-1]}),
        lambda: encode_streams([res], {"r": [129]}),
        lambda: encode_streams([res], {"r": [-129]}),
        lambda: encode_streams([StreamSpec("u", "uniform", 10)], {"u": [10]}),
        lambda: encode_streams([StreamSpec("u", "uniform", 10)], {"u": np.array([2**63], dtype=np.uint64)}),
        lambda: encode_streams([StreamSpec("x", "gaussian", 10)], {"x": [1]}),
        lambda: encode_streams([StreamSpec("x", "", 10)], {"x": [1]}),
        lambda: StreamSpec("c", "categorical", 0),
        lambda: StreamSpec("c", "categorical", 65537),
        lambda: StreamSpec("u", "uniform", 2**31),
        lambda: StreamSpec("u", "uniform", 10.0),
        lambda: StreamSpec("u", "uniform", 10, offset=2**63),
        lambda: StreamSpec("", "uniform", 10),
        lambda: encode_streams([cat], {"c": np.array([1.0, 2.0])}),
        lambda: encode_streams([cat], {"c": np.zeros((2, 2), dtype=int)}),
        lambda: encode_streams([cat], {"c": 3}),
        lambda: encode_streams([cat], {}),
        lambda: encode_streams([cat], {"c": [1], "other": [2]}),
        lambda: encode_streams([cat, cat], {"c": [1]}),
        lambda: decode_streams([cat], encode_streams([cat], {"c": [1]}), -1),
        lambda: decode_streams([cat], "not bytes", 10),
        lambda: decode_streams([cat, cat], b"", 10),
    ]
    for i, case in enumerate(cases):
        with pytest.raises(ConfigurationError):
            case()
            pytest.fail(f"case {i} did not raise")


# ---------------------------------------------------------------------------------------------
# Hostile input


def _v(x: int) -> bytes:
    """Unsigned LEB128, written independently of the module under test."""
    out = bytearray()
    while True:
        byte, x = x & 0x7F, x >> 7
        out.append(byte | (0x80 if x else 0))
        if not x:
            return bytes(out)


def _blob(*parts: bytes, words: bytes = b"", n_words: int | None = None, head: bytes = b"NE\x01") -> bytes:
    nw = len(words) // 4 if n_words is None else n_words
    return head + b"".join(parts) + _v(nw) + words


CAT = StreamSpec("a", "categorical", 31)
UNI = StreamSpec("b", "uniform", 1000)
SPECS2 = [CAT, UNI]
MAX2 = 1000


def _crafted() -> list[tuple[str, bytes]]:
    two = _v(2)
    none_b = _v(0)  # stream b empty
    rnd = random.Random(7)
    junk_words = bytes(rnd.getrandbits(8) for _ in range(400))
    return [
        ("empty", b""),
        ("magic only", b"NE"),
        ("magic+version only", b"NE\x01"),
        ("bad magic", b"EN\x01" + two + _v(0) + none_b + _v(0)),
        ("version 0", _blob(two, _v(0), none_b, head=b"NE\x00")),
        ("version 2", _blob(two, _v(0), none_b, head=b"NE\x02")),
        ("version 255", _blob(two, _v(0), none_b, head=b"NE\xff")),
        ("stream count 1", _blob(_v(1), _v(0))),
        ("stream count 3", _blob(_v(3), _v(0), _v(0), _v(0))),
        ("stream count 0", _blob(_v(0))),
        ("stream count overlong varint", b"NE\x01" + b"\xff" * 12 + b"\x01"),
        ("stream count non-minimal", _blob(b"\x82\x00", _v(0), none_b)),
        ("stream count 2**63", _blob(_v(2**63), _v(0), none_b)),
        ("symbols > max_symbols", _blob(two, _v(0), _v(MAX2 + 1))),
        ("symbols = 2**62", _blob(two, _v(2**62), _v(0))),
        ("total > max_symbols", _blob(two, _v(600), _v(1), _v(0), _v(599), _v(500))),
        ("n symbols, no table", _blob(two, _v(5))),
        ("K > n", _blob(two, _v(2), _v(2 * 2), _v(0), _v(0), _v(0), _v(0), _v(0), _v(0), none_b)),
        ("K > alphabet", _blob(two, _v(100), _v(2 * 31 + 1), b"\xff" * 4, _v(0) * 32, none_b)),
        ("support past alphabet", _blob(two, _v(3), _v(0), _v(31), _v(2), none_b)),
        ("gap list runs past alphabet", _blob(two, _v(3), _v(2), _v(29), _v(1), _v(0), _v(1), none_b)),
        ("count sum < n", _blob(two, _v(10), _v(2), _v(0), _v(0), _v(3), _v(3), none_b, words=b"\0" * 8)),
        ("count sum > n", _blob(two, _v(10), _v(2), _v(0), _v(0), _v(6), _v(6), none_b, words=b"\0" * 8)),
        ("single count != n", _blob(two, _v(10), _v(0), _v(4), _v(3), none_b)),
        ("count absurd", _blob(two, _v(10), _v(2), _v(0), _v(0), _v(2**60), _v(0), none_b)),
        ("count overlong", _blob(two, _v(10), _v(0), _v(4), b"\x89\x80\x80\x80\x80\x80\x80\x80\x80\x00", none_b)),
        ("bitmap padding bit", _blob(two, _v(3), _v(1), b"\x00\x00\x00\x80", _v(2), none_b)),
        ("bitmap popcount != K", _blob(two, _v(3), _v(2 * 1 + 1), b"\x01\x00\x00\x00", _v(2), none_b)),
        ("bitmap instead of shorter gaps", _blob(two, _v(3), _v(1), b"\x10\x00\x00\x00", _v(2), none_b)),
        ("gaps instead of shorter bitmap", _blob(two, _v(31), _v(2 * 30), _v(0) * 31, _v(0) * 31, none_b)),
        ("table truncated", _blob(two, _v(31), _v(2 * 30 + 1), b"\xff\xff")),
        ("words count > data", _blob(two, _v(0), none_b, words=b"\0" * 8, n_words=3)),
        ("words count < data", _blob(two, _v(0), none_b, words=b"\0" * 8, n_words=1)),
        ("words count huge", _blob(two, _v(0), none_b, words=b"\0" * 8, n_words=2**40)),
        ("words not whole", _blob(two, _v(0), none_b, words=b"\0" * 6, n_words=1)),
        ("words where none are coded", _blob(two, _v(0), none_b, words=b"\1\0\0\0")),
        ("no words for 1000 coin flips", _blob(two, _v(1000), _v(2 * 1 + 1), b"\x03\x00\x00\x00", _v(499), _v(499), none_b, words=b"\0" * 4)),
        ("random words, categorical", _blob(two, _v(1000), _v(2 * 1 + 1), b"\x03\x00\x00\x00", _v(499), _v(499), none_b, words=junk_words[:128])),
        ("random words, uniform", _blob(two, _v(0), _v(300), words=junk_words[:376])),
        ("random words, both", _blob(two, _v(500), _v(2 * 1 + 1), b"\x03\x00\x00\x00", _v(249), _v(249), _v(300), words=junk_words)),
        ("trailing byte", _blob(two, _v(0), none_b) + b"\0"),
    ]


@pytest.mark.parametrize("label,data", _crafted(), ids=[c[0] for c in _crafted()])
def test_crafted_inputs_raise_format_error(label, data):
    with pytest.raises(FormatError):
        decode_streams(SPECS2, data, MAX2)


def test_crafted_helpers_build_a_valid_blob():
    """The hand-built blobs above differ from a valid one only where intended."""
    valid = _blob(_v(2), _v(3), _v(2 * 1 + 0), _v(4), _v(25), _v(1), _v(0), _v(0), words=b"")
    with pytest.raises(FormatError):  # two distinct symbols need coded words
        decode_streams(SPECS2, valid, MAX2)
    real = encode_streams(SPECS2, {"a": [4, 4, 30], "b": []})
    assert real.startswith(b"NE\x01" + _v(2) + _v(3) + _v(2 * 1 + 0) + _v(4) + _v(25) + _v(1) + _v(0) + _v(0))
    _assert_same(decode_streams(SPECS2, real, MAX2), {"a": [4, 4, 30], "b": []})
    zeros = encode_streams(SPECS2, {"a": [], "b": np.zeros(300, dtype=int)})
    assert zeros == _blob(_v(2), _v(0), _v(300), words=b"\0" * (len(zeros) - 8))  # all-zero words
    _assert_same(decode_streams(SPECS2, zeros, MAX2), {"a": [], "b": np.zeros(300, dtype=int)})
    empty = _blob(_v(2), _v(0), _v(0))
    assert encode_streams(SPECS2, {"a": [], "b": []}) == empty
    _assert_same(decode_streams(SPECS2, empty, MAX2), {"a": [], "b": []})


def test_max_symbols_is_enforced():
    specs, values = _mix(500)
    data = encode_streams(specs, values)
    total = sum(len(v) for v in values.values())
    _assert_same(decode_streams(specs, data, total), values)
    with pytest.raises(FormatError):
        decode_streams(specs, data, total - 1)
    with pytest.raises(FormatError):
        decode_streams(specs, data, 0)


def test_huge_symbol_counts_fail_fast():
    """A header announcing millions of symbols with a few bytes of payload is rejected quickly."""
    big = 10**7
    cat = _blob(_v(2), _v(big), _v(2 * 1 + 1), b"\x03\x00\x00\x00", _v(big // 2 - 1), _v(big // 2 - 1), _v(0), words=b"\0" * 8)
    start = time.perf_counter()
    with pytest.raises(FormatError):
        decode_streams(SPECS2, cat, big)
    assert time.perf_counter() - start < 0.5
    uni = _blob(_v(2), _v(0), _v(big), words=b"\0" * 8)
    start = time.perf_counter()
    with pytest.raises(FormatError):
        decode_streams(SPECS2, uni, big)
    assert time.perf_counter() - start < 0.5


def _hostile_variants(data: bytes, count: int, seed: int = 0):
    """Deterministic hostile variants of ``data`` (all different from it), round-robin over kinds."""
    rng = random.Random(seed)
    n = len(data)
    header_end = min(n, 64)

    def flips(region):
        while True:
            buf = bytearray(data)
            pos = rng.randrange(region)
            buf[pos] ^= 1 << rng.randrange(8)
            yield f"flip byte {pos}", bytes(buf)

    def multi_flips():
        while True:
            buf = bytearray(data)
            k = rng.randint(2, 12)
            for _ in range(k):
                buf[rng.randrange(header_end if rng.random() < 0.5 else n)] ^= 1 << rng.randrange(8)
            yield f"flip {k} bits", bytes(buf)

    def truncations():
        for cut in range(min(n, 48)):
            yield f"truncate to {cut}", data[:cut]
        while True:
            cut = rng.randrange(n)
            yield f"truncate to {cut}", data[:cut]

    def appended():
        yield "append NUL", data + b"\0"
        yield "append 4 NUL", data + b"\0" * 4
        yield "concatenated twice", data + data
        while True:
            extra = rng.randbytes(rng.randint(1, 64))
            yield f"append {len(extra)} bytes", data + extra

    def overwrites():
        while True:
            buf = bytearray(data)
            k = rng.randint(1, 8)
            for _ in range(k):
                buf[rng.randrange(header_end if rng.random() < 0.5 else n)] = rng.randrange(256)
            yield f"overwrite {k} bytes", bytes(buf)

    def inserts_deletes():
        while True:
            pos = rng.randrange(n)
            if rng.random() < 0.5:
                yield f"delete byte {pos}", data[:pos] + data[pos + 1 :]
            else:
                yield f"insert byte at {pos}", data[:pos] + bytes([rng.randrange(256)]) + data[pos:]

    def random_blobs():
        while True:
            size = rng.randint(0, 2 * n)
            body = rng.randbytes(size)
            yield f"random {size} bytes", body
            yield f"magic + random {size} bytes", data[:3] + body

    def varint_edits():
        # Replace the byte at a header position with an overlong / huge / non-minimal varint.
        fillers = [b"\xff" * 10, b"\x80" * 9 + b"\x01", b"\x81\x00", b"\xff\xff\xff\xff\x0f", _v(2**62), _v(10**9)]
        while True:
            pos = rng.randrange(3, header_end)
            fill = rng.choice(fillers)
            yield f"varint {fill.hex()} at {pos}", data[:pos] + fill + data[pos + 1 :]

    kinds = [
        flips(header_end),
        flips(n),
        multi_flips(),
        truncations(),
        appended(),
        overwrites(),
        inserts_deletes(),
        random_blobs(),
        varint_edits(),
    ]
    produced = 0
    while produced < count:
        for kind in kinds:
            label, mutated = next(kind)
            if mutated != data and produced < count:
                produced += 1
                yield label, mutated


def test_hostile_mutations_raise_format_error_only():
    specs, values = _mix(300, seed=5)
    data = encode_streams(specs, values)
    max_symbols = 4 * sum(len(v) for v in values.values())
    start = time.perf_counter()
    outcomes = {"format_error": 0, "accepted": 0}
    for label, mutated in _hostile_variants(data, 2000):
        try:
            decoded = decode_streams(specs, mutated, max_symbols)
        except FormatError:
            outcomes["format_error"] += 1
            continue
        except Exception as exc:  # pragma: no cover - the failure being tested for
            pytest.fail(f"{label}: {type(exc).__name__}: {exc}")
        # Accepted: the format is canonical, so the variant must be exactly what the encoder
        # writes for what it decoded to (a different valid blob, never a silent corruption).
        outcomes["accepted"] += 1
        assert encode_streams(specs, decoded) == mutated, label
    elapsed = time.perf_counter() - start
    assert sum(outcomes.values()) == 2000
    assert outcomes["format_error"] >= 1900, outcomes
    assert elapsed < 20, elapsed


def test_every_single_bit_flip_is_rejected_or_a_canonical_other_blob():
    """Flip each bit of a small blob: FormatError, or another canonical blob that decodes to
    other values -- never the original values from different bytes, never a non-canonical blob.

    (The format carries no redundancy beyond the histograms: a flipped zero-run length in a
    support list, or a flipped bit of power-of-two uniform digits, is a valid encoding of other
    values. Byte-level integrity is the container's CRC's job.)"""
    specs, values = _mix(40, seed=9)
    data = encode_streams(specs, values)
    max_symbols = 4 * sum(len(v) for v in values.values())
    accepted = []
    for pos in range(len(data)):
        for bit in range(8):
            buf = bytearray(data)
            buf[pos] ^= 1 << bit
            try:
                decoded = decode_streams(specs, bytes(buf), max_symbols)
            except FormatError:
                continue
            accepted.append((pos, bit))
            assert encode_streams(specs, decoded) == bytes(buf), (pos, bit)
            assert any(not np.array_equal(decoded[k], values[k]) for k in values), (pos, bit)
    assert all(pos >= 4 for pos, _ in accepted)  # magic, version, stream count: always caught
    assert len(accepted) < 0.1 * 8 * len(data), (len(accepted), 8 * len(data))


def test_other_specs_than_the_encoders_are_rejected():
    specs, values = _mix(400)
    data = encode_streams(specs, values)
    total = sum(len(v) for v in values.values())
    with pytest.raises(FormatError):
        decode_streams(specs[:-1], data, total)
    with pytest.raises(FormatError):
        decode_streams(specs + [StreamSpec("extra", "uniform", 3)], data, total)
