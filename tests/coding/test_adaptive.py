"""Adaptive streams (neural_collages.coding.adaptive, the ``"adaptive"`` kind of coding.streams)."""

from __future__ import annotations

import numpy as np
import pytest

from neural_collages.coding.adaptive import CHUNK, MAX_ADAPTIVE_ALPHABET, chunk_ends, chunk_probabilities
from neural_collages.coding.streams import StreamSpec, decode_streams, encode_streams, stream_cost_bits
from neural_collages.errors import ConfigurationError, FormatError


def _laplace(rng, n: int, alphabet: int, scale: float = 4.0) -> np.ndarray:
    centre = alphabet // 2
    return np.clip(np.round(rng.laplace(centre, scale, n)), 0, alphabet - 1).astype(np.int64)


def _round_trip(specs, values) -> bytes:
    data = encode_streams(specs, values)
    decoded = decode_streams(specs, data, sum(len(v) for v in values.values()))
    for name, v in values.items():
        np.testing.assert_array_equal(decoded[name], np.asarray(v, dtype=np.int64), err_msg=name)
    return data


def test_chunks_double_then_stay_fixed():
    assert chunk_ends(0) == [] and chunk_ends(1) == [1] and chunk_ends(5) == [1, 2, 4, 5]
    assert chunk_ends(200) == [1, 2, 4, 8, 16, 32, 64, 128, 192, 200]
    ends = chunk_ends(10_000)
    assert ends[-1] == 10_000 and all(b > a for a, b in zip(ends, ends[1:]))
    assert max(b - a for a, b in zip(ends, ends[1:])) == CHUNK


def test_models_are_proper_and_learn_the_counts():
    p = chunk_probabilities(np.zeros(7, dtype=np.int64))
    np.testing.assert_allclose(p, 1 / 7)
    p = chunk_probabilities(np.array([90, 10, 0]))
    assert abs(p.sum() - 1) < 1e-12 and p.min() > 0 and p[0] > 0.85 and p[2] < 0.002


@pytest.mark.parametrize("alphabet", [1, 2, 8, 171, MAX_ADAPTIVE_ALPHABET])
def test_round_trip_mixed_with_the_other_kinds(alphabet):
    rng = np.random.default_rng(alphabet)
    specs = [StreamSpec("a", "adaptive", alphabet, -(alphabet // 2)), StreamSpec("c", "categorical", 31),
             StreamSpec("empty", "adaptive", 5), StreamSpec("one", "adaptive", 9), StreamSpec("u", "uniform", 1000)]
    a = _laplace(rng, 3000, alphabet) - alphabet // 2
    a[:2] = [-(alphabet // 2), alphabet - 1 - alphabet // 2]  # both ends of the alphabet
    values = {"a": a, "c": rng.integers(0, 31, 500), "empty": [], "one": [8], "u": rng.integers(0, 1000, 200)}
    first = _round_trip(specs, values)
    assert encode_streams(specs, values) == first  # deterministic


def test_estimated_bits_match_the_coded_size():
    rng = np.random.default_rng(3)
    for n, alphabet in ((300, 171), (5000, 31), (40_000, 257)):
        spec = StreamSpec("x", "adaptive", alphabet)
        values = _laplace(rng, n, alphabet)
        coded = len(encode_streams([spec], {"x": values}))
        ideal = stream_cost_bits(spec, values) / 8
        assert ideal <= coded <= ideal * 1.01 + 16, (n, coded, ideal)


def test_learning_beats_a_stored_table_on_short_streams():
    """Why the kind exists: a few hundred symbols over a wide alphabet, where the histogram is costly."""
    rng = np.random.default_rng(4)
    for n in (200, 1000, 3000):
        values = _laplace(rng, n, 171, scale=6.0)
        sizes = {kind: len(encode_streams([StreamSpec("x", kind, 171)], {"x": values}))
                 for kind in ("adaptive", "categorical")}
        assert sizes["adaptive"] < sizes["categorical"], (n, sizes)


def test_bad_adaptive_specs_and_values_raise_configuration_error():
    with pytest.raises(ConfigurationError):
        StreamSpec("x", "adaptive", MAX_ADAPTIVE_ALPHABET + 1)
    with pytest.raises(ConfigurationError):
        encode_streams([StreamSpec("x", "adaptive", 4)], {"x": [0, 4]})


def test_hostile_blobs_raise_format_error_or_are_another_canonical_blob():
    rng = np.random.default_rng(5)
    specs = [StreamSpec("a", "adaptive", 171, -85), StreamSpec("f", "adaptive", 2), StreamSpec("u", "uniform", 50)]
    values = {"a": _laplace(rng, 120, 171) - 85, "f": rng.integers(0, 2, 60), "u": rng.integers(0, 50, 20)}
    data = encode_streams(specs, values)
    max_symbols = 4 * sum(len(v) for v in values.values())
    variants = [data[:k] for k in range(len(data))] + [data + b"\0", data + data[-4:]]
    for pos in range(len(data)):
        for bit in range(8):
            buf = bytearray(data)
            buf[pos] ^= 1 << bit
            variants.append(bytes(buf))
    rejected = 0
    for blob in variants:
        try:
            decoded = decode_streams(specs, blob, max_symbols)
        except FormatError:
            rejected += 1
            continue
        assert encode_streams(specs, decoded) == blob  # never a silent non-canonical reading
        assert any(not np.array_equal(decoded[k], values[k]) for k in values)
    assert rejected >= 0.8 * len(variants), (rejected, len(variants))
