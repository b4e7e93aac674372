"""Unsigned LEB128 varints: minimal writes, hostile-input reads, and the ByteReader cursor."""

import random

import pytest

from neural_collages.coding.varints import MAX_VARINT_BYTES, ByteReader, put_varint, read_varint, varint_length
from neural_collages.errors import ConfigurationError, FormatError

EDGES = [0, 1, 127, 128, 255, 300, 16383, 16384, 2**21 - 1, 2**21, 2**32, 2**56 - 1, 2**56, 2**63 - 1]


def encode(value: int) -> bytes:
    out = bytearray()
    put_varint(out, value)
    return bytes(out)


@pytest.mark.parametrize("value", EDGES)
def test_round_trip_of_edge_values(value):
    data = encode(value)
    assert read_varint(data) == (value, len(data))
    assert len(data) == varint_length(value)
    # Minimal: the last byte is the only one without the continuation bit, and it is not 0
    # (except for the value 0 itself).
    assert all(b & 0x80 for b in data[:-1]) and not data[-1] & 0x80
    assert data[-1] != 0 or value == 0


@pytest.mark.parametrize(
    "value, data",
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (16384, b"\x80\x80\x01"),
        (2**63 - 1, b"\xff" * 8 + b"\x7f"),
    ],
)
def test_known_encodings(value, data):
    assert encode(value) == data
    assert read_varint(data) == (value, len(data))


def test_lengths_grow_every_seven_bits():
    for bits in range(0, 64):
        value = (1 << bits) - 1 if bits else 0
        assert varint_length(value) == max(1, -(-bits // 7))
        assert len(encode(value)) == varint_length(value)
    assert len(encode(2**63 - 1)) == MAX_VARINT_BYTES


def test_put_varint_appends_to_existing_bytes():
    out = bytearray(b"ab")
    put_varint(out, 128)
    put_varint(out, 5)
    assert bytes(out) == b"ab\x80\x01\x05"


def test_random_sequences_round_trip():
    rng = random.Random(0)
    values = [rng.randrange(0, 1 << rng.randrange(1, 64)) for _ in range(500)] + EDGES
    out = bytearray()
    for v in values:
        put_varint(out, v)
    pos, got = 0, []
    while pos < len(out):
        v, pos = read_varint(out, pos)
        got.append(v)
    assert got == values and pos == len(out)


@pytest.mark.parametrize("value", [-1, -(2**70), 2**63, 2**64, 2**100])
def test_out_of_range_values_raise_configuration_error(value):
    out = bytearray(b"x")
    with pytest.raises(ConfigurationError):
        put_varint(out, value)
    assert out == b"x"  # nothing written


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff", b"\x80" * 8, b"\xff" * 8])
def test_truncated_input_raises_format_error(data):
    with pytest.raises(FormatError, match="truncated"):
        read_varint(data)


@pytest.mark.parametrize("data", [b"\x80\x00", b"\x81\x00", b"\xff\x80\x00", b"\x80" * 8 + b"\x00"])
def test_non_minimal_encodings_raise_format_error(data):
    with pytest.raises(FormatError, match="non-minimal"):
        read_varint(data)


@pytest.mark.parametrize("data", [b"\x80" * 9 + b"\x01", b"\xff" * 9 + b"\x7f", b"\xff" * 20])
def test_over_long_encodings_raise_format_error(data):
    with pytest.raises(FormatError, match="longer than"):
        read_varint(data)


def test_read_at_an_offset_and_error_names():
    data = b"\xffjunk" + encode(300) + b"tail"
    assert read_varint(data, 5) == (300, 7)
    with pytest.raises(FormatError, match="the block count"):
        read_varint(b"\x80", 0, what="block count")


def test_every_two_byte_string_decodes_only_if_minimal():
    for a in range(256):
        for b in range(256):
            data = bytes([a, b])
            if not a & 0x80:
                assert read_varint(data) == (a, 1)
            elif b & 0x80:
                with pytest.raises(FormatError):
                    read_varint(data)
            elif b == 0:
                with pytest.raises(FormatError):
                    read_varint(data)
            else:
                value, pos = read_varint(data)
                assert pos == 2 and encode(value) == data


# ------------------------------------------------------------------ ByteReader


def test_byte_reader_take_and_remaining():
    reader = ByteReader(b"abcdef")
    assert reader.remaining() == 6
    assert reader.take(2, "head") == b"ab"
    assert reader.remaining() == 4 and reader.pos == 2
    assert reader.take(0, "nothing") == b""
    assert reader.take(4, "rest") == b"cdef"
    assert reader.remaining() == 0
    with pytest.raises(FormatError, match="the tail"):
        reader.take(1, "tail")


def test_byte_reader_take_past_the_end_does_not_move():
    reader = ByteReader(b"abc")
    with pytest.raises(FormatError, match="truncated"):
        reader.take(4, "block")
    assert reader.pos == 0
    assert reader.take(3, "block") == b"abc"


def test_byte_reader_varint_limits():
    data = encode(10) + encode(11) + encode(2**40) + encode(0)
    reader = ByteReader(data)
    assert reader.varint("a", limit=10) == 10  # equal to the limit is fine
    with pytest.raises(FormatError, match="exceeds its limit"):
        reader.varint("b", limit=10)
    reader = ByteReader(data)
    reader.varint("a", 10)
    assert reader.varint("b", 11) == 11
    assert reader.varint("c", 2**40) == 2**40
    assert reader.varint("d", 0) == 0
    assert reader.remaining() == 0
    with pytest.raises(FormatError, match="truncated"):
        reader.varint("e", 100)


def test_byte_reader_refuses_hostile_varints():
    for data in (b"\x80\x00", b"\x80" * 10, b"\x80"):
        with pytest.raises(FormatError):
            ByteReader(data).varint("count", 2**63)
