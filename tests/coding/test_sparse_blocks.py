import numpy as np
import pytest

from neural_collages.coding import sparse_blocks as sb
from neural_collages.coding import table_coding as tc
from neural_collages.errors import ConfigurationError, FormatError

BOUND = 6  # values -6..6


def sparse_tables(num_tables=12, seed=0):
    """Laplace-like tables peaked at zero (probability of zero 0.6-0.97), like trained coefficient tables."""
    rng = np.random.default_rng(seed)
    v = np.arange(-BOUND, BOUND + 1)
    scales = rng.uniform(0.1, 1.5, size=(num_tables, 1))
    pmf = np.exp(-np.abs(v)[None] / scales)
    return tc.FrequencyTables(tc.quantise_pmf(pmf / pmf.sum(1, keepdims=True)), np.full(num_tables, -BOUND))


def sample_rows(tables, widths, rows=6, blocks=9, seed=1):
    """Rows of blocks drawn from the tables themselves (so the ideal length is the expected one)."""
    rng = np.random.default_rng(seed)
    probs = tables.probabilities()
    out = []
    for width in widths:
        for _ in range(rows):
            bases = rng.integers(0, tables.num_tables - width + 1, size=blocks)
            tabs = bases[:, None] + np.arange(width)
            u = rng.random(tabs.shape)[..., None]
            sym = (u > np.cumsum(probs[tabs], -1)).sum(-1)
            out.append((sym + tables.offsets[tabs], bases))
    return out


def ideal_bytes(tables, rows):
    values = np.concatenate([v.reshape(-1) for v, _ in rows])
    tabs = np.concatenate([(b[:, None] + np.arange(v.shape[1])).reshape(-1) for v, b in rows])
    return tables.bits(values, tabs) / 8


def decode_all(data, models, rows):
    decoder = sb.BlockDecoder(data, models)
    out = [decoder.decode_row(bases, values.shape[1]) for values, bases in rows]
    decoder.finish()
    return out


def test_round_trip_is_bit_exact_and_the_length_is_the_tables_ideal():
    tables = sparse_tables()
    models = sb.BlockModels(tables)
    rows = sample_rows(tables, widths=(1, 5, 12))
    rows.append((np.zeros((4, 5), dtype=np.int64), np.zeros(4, dtype=np.int64)))  # blocks without a nonzero value
    rows.append((np.full((3, 4), 2), np.arange(3)))  # every value nonzero, the last position too
    rows.append((np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)))  # an empty row
    data = sb.encode_rows(rows, models)
    for got, (values, _) in zip(decode_all(data, models, rows), rows):
        np.testing.assert_array_equal(got, values)
    assert sb.encode_rows(rows, sb.BlockModels(tables)) == data  # deterministic, fresh caches too
    ideal = ideal_bytes(tables, rows)
    assert abs(len(data) - ideal) <= 0.01 * ideal + 16, (len(data), ideal)


def test_position_models_reparametrise_the_tables_exactly():
    tables = sparse_tables(num_tables=8, seed=3)
    models = sb.BlockModels(tables)
    m = models.positions(2, 6)
    np.testing.assert_allclose(m.sum(1), 1.0, rtol=1e-12)
    assert np.all(np.tril(m[:, :6], -1) == 0)  # never before the start
    p = models.p_zero[2:8]
    # P(block = 0, 0, v, 0, 0, 0) = P(first nonzero at 2) P(v | nonzero) P(none after 2)
    v = 3
    t = 4
    direct = np.prod(p) / p[2] * tables.probabilities()[t, v + BOUND]
    assert m[0, 2] * models.values[t, v + BOUND] * m[3, 6] == pytest.approx(direct, rel=1e-12)


def test_a_mostly_zero_stream_codes_far_fewer_symbols_than_values():
    tables = sparse_tables()
    models = sb.BlockModels(tables)
    rows = [(np.zeros((50, 12), dtype=np.int64), np.zeros(50, dtype=np.int64))]
    rows[0][0][::7, 3] = 1
    data = sb.encode_rows(rows, models)
    np.testing.assert_array_equal(decode_all(data, models, rows)[0], rows[0][0])
    assert abs(len(data) - ideal_bytes(tables, rows)) <= 16


def test_bad_arguments_raise_configuration_errors():
    tables = sparse_tables()
    models = sb.BlockModels(tables)
    with pytest.raises(ConfigurationError):
        sb.encode_rows([(np.zeros((2, 5), dtype=np.int64), np.array([0, 8]))], models)  # tables 8..12 of 12
    with pytest.raises(ConfigurationError):
        sb.encode_rows([(np.full((1, 2), BOUND + 1), np.array([0]))], models)  # outside the tables' range
    with pytest.raises(ConfigurationError):
        sb.encode_rows([(np.zeros(3, dtype=np.int64), np.array([0]))], models)  # not (blocks, D)
    with pytest.raises(ConfigurationError):
        sb.BlockModels(tc.FrequencyTables(np.full((2, 4), 2**14), np.array([1, 1])))  # cannot code 0
    with pytest.raises(ConfigurationError):
        sb.BlockDecoder("not bytes", models)


def test_the_decoder_rejects_hostile_data_with_format_errors_only():
    tables = sparse_tables()
    models = sb.BlockModels(tables)
    rows = sample_rows(tables, widths=(5,), rows=3)
    data = sb.encode_rows(rows, models)
    for bad in (data[:-1], data + b"\0", b"\x05" + data[1:]):
        with pytest.raises(FormatError):
            decode_all(bad, models, rows)
    rng = np.random.default_rng(0)
    rejected = 0
    for _ in range(200):
        bad = bytearray(data)
        bad[1 + int(rng.integers(len(data) - 1))] ^= 1 << int(rng.integers(8))
        try:
            got = decode_all(bytes(bad), models, rows)
        except FormatError:
            rejected += 1
            continue
        # Accepted only as the one encoding of other values (integrity is the container's checksum's job).
        assert sb.encode_rows(list(zip(got, [b for _, b in rows])), models) == bytes(bad)
        assert any(not np.array_equal(g, v) for g, (v, _) in zip(got, rows))
    assert rejected > 150


def test_rows_with_more_nonzero_values_than_one_coder_call_round_trip():
    tables = sparse_tables()
    models = sb.BlockModels(tables)
    rng = np.random.default_rng(4)
    values = rng.integers(1, BOUND + 1, size=(1500, 12)) * rng.choice([-1, 1], size=(1500, 12))
    rows = [(values, rng.integers(0, 1, size=1500))]  # 18000 nonzero values: two value batches
    assert values.size > sb._VALUES_PER_CALL
    data = sb.encode_rows(rows, models)
    np.testing.assert_array_equal(decode_all(data, models, rows)[0], values)


def test_models_shared_by_threads_code_the_same_bytes():
    from concurrent.futures import ThreadPoolExecutor

    tables = sparse_tables(num_tables=40, seed=6)
    rows = sample_rows(tables, widths=(5, 9), rows=4, blocks=30, seed=7)
    expected = sb.encode_rows(rows, sb.BlockModels(tables))
    for _ in range(5):
        shared = sb.BlockModels(tables)  # a fresh cache filled by four threads at once
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: sb.encode_rows(rows, shared), range(8)))
        assert all(r == expected for r in results)
        for width in (5, 9):
            for base in range(0, 40 - width + 1, 7):
                np.testing.assert_array_equal(shared.position_probs(np.array([base]), np.array([0]), width)[0],
                                              shared.positions(base, width)[0])
