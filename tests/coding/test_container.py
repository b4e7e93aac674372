import array
import json
import random
import re
import struct
import time
import zlib

import pytest

from fuzzing import (
    CODEC_AT,
    FLAGS_AT,
    HEIGHT_AT,
    PARAMS_LEN_AT,
    VERSION_AT,
    WIDTH_AT,
    crafted,
    layout,
    mutations,
    with_field,
    with_fixed_crc,
    with_params,
)
from neural_collages import limits
from neural_collages.coding import container
from neural_collages.coding.container import (
    CODEC_NAMES,
    MAX_FILE_BYTES,
    ContainerHeader,
    describe,
    pack,
    unpack,
)
from neural_collages.errors import ConfigurationError, FormatError

PARAMS = {
    "title": "Zürich — 東京 🌸",
    "quality": 0.75,
    "levels": [4, 8, 16],
    "mixed": [1, -2.5, "x", True, None],
    "big": 2**70,
    "flag": False,
    "nothing": None,
    "empty_list": [],
    "empty_str": "",
}


def payload_bytes(n, seed=1):
    return random.Random(seed).randbytes(n)


@pytest.fixture
def header():
    return ContainerHeader(codec="neural", width=64, height=48, channels=3, params=dict(PARAMS))


@pytest.fixture
def valid(header):
    return pack(header, payload_bytes(300))


# ---------------------------------------------------------------------------------------------
# round trip, determinism


@pytest.mark.parametrize(
    "hdr, payload",
    [
        (ContainerHeader("pifs", 1, 1, 1, {}), b""),
        (ContainerHeader("pifs", 256, 256, 1, {"range": 8, "domain": [16, 32]}), payload_bytes(1000)),
        (ContainerHeader("neural", 65535, 1, 3, dict(PARAMS)), payload_bytes(17)),
        (ContainerHeader("neural", 8192, 8192, 3, {"ü": "ß", "k": "\u0000\n\"\\"}), b""),
    ],
)
def test_round_trip(hdr, payload):
    data = pack(hdr, payload)
    got_header, got_payload = unpack(data)
    assert got_header == hdr
    assert got_payload == payload
    assert type(got_payload) is bytes
    # types survive: bool stays bool, int stays int, float stays float
    for key, value in hdr.params.items():
        assert type(got_header.params[key]) is type(value)
    assert pack(got_header, got_payload) == data
    assert data[:4] == b"NCLG"
    raw_params = json.dumps(hdr.params, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(data) == 27 + len(raw_params) + len(payload)


def test_layout_matches_spec(header):
    payload = b"abc"
    data = pack(header, payload)
    raw_params = json.dumps(header.params, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    expected = (
        b"NCLG"
        + bytes([1, 2])
        + struct.pack("<HIIBH", 0, 64, 48, 3, len(raw_params))
        + raw_params
        + struct.pack("<I", 3)
        + payload
    )
    assert data == expected + struct.pack("<I", zlib.crc32(expected))


def test_unpack_accepts_bytes_like(valid, header):
    for variant in (bytearray(valid), memoryview(valid), memoryview(bytearray(valid))):
        got, payload = unpack(variant)
        assert got == header and payload == payload_bytes(300)
    # memoryviews with another item format, or not contiguous, are read as their raw bytes
    for fmt in ("c", "b"):
        assert unpack(memoryview(valid).cast(fmt))[0] == header
    spaced = bytearray(2 * len(valid))
    spaced[::2] = valid
    assert unpack(memoryview(spaced)[::2])[0] == header
    if len(valid) % 4 == 0:
        assert unpack(memoryview(array.array("I", valid)))[0] == header


def test_unpack_does_not_lock_bytearray(valid):
    buf = bytearray(valid)
    unpack(buf)
    buf.extend(b"x")  # would raise BufferError if a memoryview were left exported
    with pytest.raises(FormatError):
        unpack(buf)
    buf.clear()


def test_pack_is_deterministic(header):
    payload = payload_bytes(100)
    reordered = ContainerHeader("neural", 64, 48, 3, dict(reversed(list(PARAMS.items()))))
    assert list(reordered.params) != list(header.params)
    assert pack(header, payload) == pack(header, payload) == pack(reordered, payload)
    assert pack(header, bytearray(payload)) == pack(header, memoryview(payload)) == pack(header, payload)


def test_tuples_are_written_as_lists():
    data = pack(ContainerHeader("pifs", 2, 2, 1, {"a": (1, 2)}), b"")
    assert unpack(data)[0].params == {"a": [1, 2]}


# ---------------------------------------------------------------------------------------------
# pack validation


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"codec": "jpeg"}, "unknown codec 'jpeg'"),
        ({"codec": 1}, "unknown codec 1"),
        ({"width": 0}, "width 0 is out of range"),
        ({"height": 65536}, "height 65536 is out of range"),
        ({"width": -5}, "width -5"),
        ({"width": 2.0}, "width must be an int"),
        ({"width": True}, "width must be an int"),
        ({"width": 65535, "height": 65535}, "MAX_PIXELS"),
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"channels": 4}, "channels must be 1 or 3"),
        ({"version": 2}, "cannot write format version 2"),
        ({"params": [1, 2]}, "params must be a dict"),
        ({"params": {"a": [[1]]}}, "inside a list"),
        ({"params": {"a": {"b": 1}}}, "as a value"),
        ({"params": {"a": [{"b": 1}]}}, "inside a list"),
        ({"params": {"a": {1, 2}}}, "set is not allowed"),
        ({"params": {"a": b"x"}}, "bytes is not allowed"),
        ({"params": {1: "x"}}, "keys must be strings"),
        ({"params": {"a": float("nan")}}, "finite"),
        ({"params": {"a": [float("inf")]}}, "finite"),
        ({"params": {"a": "\ud800"}}, "UTF-8"),
        ({"params": {"a": "x" * 4100}}, "more than the 4096 allowed"),
    ],
)
def test_pack_rejects_bad_headers(kwargs, message):
    fields = {"codec": "pifs", "width": 16, "height": 16, "channels": 3, "params": {}}
    fields.update(kwargs)
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        pack(ContainerHeader(**fields), b"")


def test_pack_rejects_bad_payload_and_header_types(monkeypatch):
    hdr = ContainerHeader("pifs", 4, 4, 1, {})
    with pytest.raises(ConfigurationError, match="payload must be bytes"):
        pack(hdr, "text")
    with pytest.raises(ConfigurationError, match="ContainerHeader"):
        pack({"codec": "pifs"}, b"")
    monkeypatch.setattr(container, "MAX_PAYLOAD_BYTES", 10)
    pack(hdr, b"x" * 10)
    with pytest.raises(ConfigurationError, match="exceeds the 10-byte limit"):
        pack(hdr, b"x" * 11)


def test_params_limit_is_exact():
    base = ContainerHeader("pifs", 4, 4, 1, {"a": ""})
    room = 4096 - len(b'{"a":""}')
    data = pack(ContainerHeader("pifs", 4, 4, 1, {"a": "x" * room}), b"")
    assert layout(data)["params_len"] == 4096
    assert unpack(data)[0].params["a"] == "x" * room
    with pytest.raises(ConfigurationError):
        pack(ContainerHeader("pifs", 4, 4, 1, {"a": "x" * (room + 1)}), b"")
    assert base.params == {"a": ""}


# ---------------------------------------------------------------------------------------------
# unpack: messages for specific problems


@pytest.mark.parametrize("bad", ["NCLG", None, 12, [78, 67], bytes])
def test_unpack_rejects_non_bytes(bad):
    with pytest.raises(ConfigurationError, match="needs bytes"):
        unpack(bad)


def test_unpack_rejects_released_memoryview(valid):
    view = memoryview(valid)
    view.release()
    with pytest.raises(ConfigurationError):
        unpack(view)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not a .clg file: the data is empty"),
        (b"N", "truncated"),
        (b"NCL", "truncated"),
        (b"NCLX", "not a .clg file"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not a .clg file"),
        (b"nclg" + b"\0" * 40, "not a .clg file"),
        (b"NCLG", "truncated"),
        (b"NCLG\x01", "truncated"),
        (b"NCLG\x01\x01\x00\x00", "shorter than the 19-byte fixed header"),
    ],
)
def test_unpack_short_or_foreign_data(data, message):
    with pytest.raises(FormatError, match=re.escape(message)):
        unpack(data)


def test_version_message(valid):
    with pytest.raises(FormatError, match=re.escape("unsupported format version 2 (this build reads 1)")):
        unpack(with_field(valid, VERSION_AT, "B", 2))
    # the version is checked before anything else after the magic, even on a short file
    with pytest.raises(FormatError, match="unsupported format version 7"):
        unpack(b"NCLG\x07")


def test_truncated_and_trailing_are_told_apart(valid):
    with pytest.raises(FormatError, match=r"^truncated \.clg file: the header implies \d+ bytes, got only"):
        unpack(valid[:-1])
    with pytest.raises(FormatError, match=r"3 trailing bytes after the end"):
        unpack(valid + b"abc")
    with pytest.raises(FormatError, match="trailing bytes"):
        unpack(valid + valid)


def test_checksum_mismatch(valid):
    data = bytearray(valid)
    data[layout(valid)["payload_at"] + 5] ^= 0x10
    with pytest.raises(FormatError, match="checksum mismatch"):
        unpack(bytes(data))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: with_field(d, CODEC_AT, "B", 0), "unknown codec id 0 (this build knows 1=pifs, 2=neural, 3=fractal-art)"),
        (lambda d: with_field(d, CODEC_AT, "B", 200), "unknown codec id 200"),
        (lambda d: with_field(d, FLAGS_AT, "H", 4), "reserved flags 0x0004"),
        (lambda d: with_field(d, WIDTH_AT, "I", 0), "image width 0 is out of range"),
        (lambda d: with_field(d, HEIGHT_AT, "I", 0), "image height 0 is out of range"),
        (lambda d: with_field(d, WIDTH_AT, "I", 2**32 - 1), "image width 4294967295 is out of range"),
        (lambda d: with_field(d, HEIGHT_AT, "I", 65536), "image height 65536"),
        (
            lambda d: with_field(with_field(d, WIDTH_AT, "I", 65535, False), HEIGHT_AT, "I", 65535),
            "image size 65535x65535",
        ),
        (lambda d: with_field(d, 16, "B", 2), "channel count 2"),
        (lambda d: with_field(d, 16, "B", 0), "channel count 0"),
        (lambda d: with_field(d, PARAMS_LEN_AT, "H", 0xFFFF), "params length 65535 exceeds the 4096-byte limit"),
        (lambda d: with_field(d, PARAMS_LEN_AT, "H", 4000), "truncated .clg file"),
        (lambda d: with_field(d, layout(d)["payload_len_at"], "I", 2**32 - 1), "payload length 4294967295 exceeds"),
        (lambda d: with_field(d, layout(d)["payload_len_at"], "I", 2**28), "truncated .clg file: the header implies"),
        (lambda d: with_field(d, layout(d)["payload_len_at"], "I", 7), "trailing bytes"),
        (lambda d: with_params(d, b""), "not valid JSON"),
        (lambda d: with_params(d, b"{bad json"), "not valid JSON"),
        (lambda d: with_params(d, b'{"a":"\xff\xfe"}'), "not valid UTF-8"),
        (lambda d: with_params(d, b"[1,2,3]"), "must be a dict / JSON object, got list"),
        (lambda d: with_params(d, b'{"a":[[1]]}'), "a list inside a list is not allowed"),
        (lambda d: with_params(d, b'{"a":{"b":{"c":1}}}'), "a dict as a value is not allowed"),
        (lambda d: with_params(d, b"[" * 2048 + b"]" * 2048), "not valid JSON"),
        (lambda d: with_params(d, b'{"a":NaN}'), "not valid JSON"),
        (lambda d: with_params(d, b'{"a":1,"a":2}'), "duplicate key 'a'"),
        (lambda d: with_params(d, b'{"b":1,"a":2}'), "not in canonical form"),
        (lambda d: with_params(d, b'{"a": 1}'), "not in canonical form"),
        (lambda d: with_params(d, b'{"a":1.50}'), "not in canonical form"),
        (lambda d: with_params(d, b'{"a":"\\ud800"}'), "valid Unicode"),
        (lambda d: with_params(d, b'{"a":1} '), "not in canonical form"),
        (lambda d: with_params(d, b'{"a":"' + b"x" * 4095 + b'"}'), "params length 4103 exceeds"),
    ],
)
def test_crafted_headers_with_valid_crc(valid, edit, message):
    data = edit(valid)
    # the edit is consistent with its checksum: only the crafted field is wrong
    if "trailing" not in message and "truncated" not in message:
        assert zlib.crc32(data[:-4]) == struct.unpack("<I", data[-4:])[0]
    with pytest.raises(FormatError, match=re.escape(message)):
        unpack(data)


def test_with_params_helper_round_trips(valid, header):
    raw = json.dumps(header.params, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert with_params(valid, raw) == valid
    assert with_fixed_crc(valid) == valid
    assert unpack(with_params(valid, b'{"z":1}'))[0].params == {"z": 1}


# ---------------------------------------------------------------------------------------------
# fuzzing


def _check_mutations(valid, count, seed=0):
    accepted = []
    for label, data in mutations(valid, count, seed=seed):
        try:
            header, payload = unpack(data)
        except FormatError as exc:
            assert str(exc), label
            continue
        except Exception as exc:  # pragma: no cover - the failure being tested for
            pytest.fail(f"mutation {label!r}: {type(exc).__name__} instead of FormatError: {exc}")
        # Only a file that is itself valid may be accepted, and it must be canonical.
        assert pack(header, payload) == data, label
        accepted.append(label)
    return accepted


def test_fuzz_500_mutations(valid):
    start = time.perf_counter()
    accepted = _check_mutations(valid, 500)
    elapsed = time.perf_counter() - start
    assert accepted == []
    assert elapsed < 10, f"500 mutations took {elapsed:.1f} s (hang?)"


def test_fuzz_minimal_file():
    minimal = pack(ContainerHeader("pifs", 1, 1, 1, {}), b"")
    assert len(minimal) == 29
    assert _check_mutations(minimal, 300, seed=1) == []


def test_mutations_are_deterministic_and_varied(valid):
    first = list(mutations(valid, 500))
    assert first == list(mutations(valid, 500))
    assert first != list(mutations(valid, 500, seed=1))
    assert len(first) == 500
    assert all(data != valid for _, data in first)
    labels = " ".join(label for label, _ in first)
    for kind in ("flip bit", "flip header bit", "bits", "(boundary)", "truncate to 0 bytes", "append", "overwrite"):
        assert kind in labels
    # every crafted edit is included once 500 are asked for
    crafted_labels = {label for label, _ in crafted(valid)}
    assert crafted_labels <= {label for label, _ in first}
    assert len(list(mutations(valid, 7))) == 7


# ---------------------------------------------------------------------------------------------
# describe


def test_describe(header):
    text = describe(header, payload_size=1234, file_size=1500)
    assert "neural" in text
    assert "64x48" in text
    assert f"{8 * 1500 / (64 * 48):.4f} bpp" in text
    assert "1,234 bytes" in text
    assert "channels:    3" in text
    lines = text.splitlines()
    for key in PARAMS:
        assert any(line.strip().startswith(f"{key} ") for line in lines), key
    assert "東京" in text
    assert "params:      (none)" in describe(ContainerHeader("pifs", 4, 4, 1, {}), 0, 29)
    with pytest.raises(ConfigurationError):
        describe(header, -1, 10)


def test_codec_names_and_limits():
    assert CODEC_NAMES == {1: "pifs", 2: "neural", 3: "fractal-art"}
    assert container.MAX_PAYLOAD_BYTES == 256 * 1024 * 1024
    assert container.MAX_PARAMS_BYTES == 4096
    assert MAX_FILE_BYTES == 27 + 4096 + 256 * 1024 * 1024
    assert limits.MAX_PIXELS == 2**26
    assert "NCLG" in container.__doc__ and "CRC32" in container.__doc__
