"""Hostile variants of a valid `.clg` file, for the decoder tests of the container and codecs.

``mutations(valid_bytes, count)`` yields ``(label, data)`` pairs deterministically (same input,
count and seed -> same sequence), every ``data`` different from the input. A decoder under test
should raise ``FormatError`` for each (or, for the rare variant that is itself a valid file,
return normally) -- never another exception, a crash or a hang. The label says what was done,
for failure messages.

The layout knowledge here (offsets of the fixed header fields) is written down independently of
``neural_collages.coding.container`` on purpose, from the format spec: a test that took the offsets from
the module under test would share its mistakes.
"""

from __future__ import annotations

import random
import struct
import zlib
from typing import Iterator

__all__ = ["mutations", "with_fixed_crc", "with_field", "with_params", "crafted", "layout", "payload_flips",
           "decode_hostile"]

# Offsets of the fixed header of format version 1 (see the container module docstring).
MAGIC_AT, VERSION_AT, CODEC_AT, FLAGS_AT = 0, 4, 5, 6
WIDTH_AT, HEIGHT_AT, CHANNELS_AT, PARAMS_LEN_AT = 8, 12, 16, 17
FIXED_END = 19


def with_fixed_crc(data: bytes) -> bytes:
    """``data`` with its last 4 bytes replaced by the CRC32 of everything before them.

    Use it after editing a header field so the edit gets past the checksum and reaches the
    checks it is meant to exercise. Data shorter than 4 bytes is returned unchanged.
    """
    data = bytes(data)
    if len(data) < 4:
        return data
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def layout(data: bytes) -> dict[str, int]:
    """Offsets of the variable parts of a well-formed file (params, payload length, payload, CRC)."""
    (params_len,) = struct.unpack_from("<H", data, PARAMS_LEN_AT)
    payload_len_at = FIXED_END + params_len
    (payload_len,) = struct.unpack_from("<I", data, payload_len_at)
    return {
        "params_at": FIXED_END,
        "params_len": params_len,
        "payload_len_at": payload_len_at,
        "payload_at": payload_len_at + 4,
        "payload_len": payload_len,
        "crc_at": payload_len_at + 4 + payload_len,
    }


def with_field(data: bytes, offset: int, fmt: str, value: int, fix_crc: bool = True) -> bytes:
    """``data`` with the little-endian field ``fmt`` at ``offset`` set to ``value``."""
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, offset, value)
    return with_fixed_crc(out) if fix_crc else bytes(out)


def with_params(data: bytes, raw_params: bytes) -> bytes:
    """A copy of the well-formed file ``data`` whose params section is ``raw_params`` (any bytes),
    with the params length and CRC made consistent, so only the params themselves are wrong."""
    lay = layout(data)
    out = (
        data[:PARAMS_LEN_AT]
        + struct.pack("<H", len(raw_params))
        + raw_params
        + data[lay["payload_len_at"] : lay["crc_at"]]
        + b"\0\0\0\0"
    )
    return with_fixed_crc(out)


def crafted(data: bytes) -> list[tuple[str, bytes]]:
    """Hand-made header edits of the well-formed file ``data``, CRC recomputed where it helps."""
    lay = layout(data)
    size = len(data)
    plen_at = lay["payload_len_at"]
    edits: list[tuple[str, bytes]] = [
        ("magic=NCLX", b"NCLX" + data[4:]),
        ("magic=png", b"\x89PNG" + data[4:]),
        ("version=0", with_field(data, VERSION_AT, "B", 0)),
        ("version=2", with_field(data, VERSION_AT, "B", 2)),
        ("version=255", with_field(data, VERSION_AT, "B", 255)),
        ("codec=0", with_field(data, CODEC_AT, "B", 0)),
        ("codec=4", with_field(data, CODEC_AT, "B", 4)),
        ("codec=255", with_field(data, CODEC_AT, "B", 255)),
        ("flags=1", with_field(data, FLAGS_AT, "H", 1)),
        ("flags=0x8000", with_field(data, FLAGS_AT, "H", 0x8000)),
        ("width=0", with_field(data, WIDTH_AT, "I", 0)),
        ("height=0", with_field(data, HEIGHT_AT, "I", 0)),
        ("width=65536", with_field(data, WIDTH_AT, "I", 65536)),
        ("height=2**32-1", with_field(data, HEIGHT_AT, "I", 2**32 - 1)),
        ("width=2**31", with_field(data, WIDTH_AT, "I", 2**31)),
        ("size=65535x65535", with_field(with_field(data, WIDTH_AT, "I", 65535, False), HEIGHT_AT, "I", 65535)),
        ("channels=0", with_field(data, CHANNELS_AT, "B", 0)),
        ("channels=2", with_field(data, CHANNELS_AT, "B", 2)),
        ("channels=4", with_field(data, CHANNELS_AT, "B", 4)),
        ("channels=255", with_field(data, CHANNELS_AT, "B", 255)),
        ("params_len=0xffff", with_field(data, PARAMS_LEN_AT, "H", 0xFFFF)),
        ("params_len=4097", with_field(data, PARAMS_LEN_AT, "H", 4097)),
        ("params_len past end", with_field(data, PARAMS_LEN_AT, "H", min(size, 4096))),
        ("params_len-1", with_field(data, PARAMS_LEN_AT, "H", max(lay["params_len"] - 1, 0))),
        ("params_len+1", with_field(data, PARAMS_LEN_AT, "H", lay["params_len"] + 1)),
        ("payload_len=2**32-1", with_field(data, plen_at, "I", 2**32 - 1)),
        ("payload_len=256MiB+1", with_field(data, plen_at, "I", 256 * 1024 * 1024 + 1)),
        ("payload_len=256MiB", with_field(data, plen_at, "I", 256 * 1024 * 1024)),
        ("payload_len past end", with_field(data, plen_at, "I", lay["payload_len"] + 1)),
        ("payload_len short", with_field(data, plen_at, "I", max(lay["payload_len"] - 1, 0))),
        ("payload_len=0", with_field(data, plen_at, "I", 0)),
        ("crc zeroed", data[:-4] + b"\0\0\0\0"),
        ("crc inverted", data[:-4] + bytes(b ^ 0xFF for b in data[-4:])),
        ("concatenated twice", data + data),
        ("params: empty", with_params(data, b"")),
        ("params: not utf-8", with_params(data, b'{"a":"\xff"}')),
        ("params: not json", with_params(data, b"{nope}")),
        ("params: array", with_params(data, b"[1,2]")),
        ("params: number", with_params(data, b"3")),
        ("params: null", with_params(data, b"null")),
        ("params: nested list", with_params(data, b'{"a":[[1]]}')),
        ("params: nested object", with_params(data, b'{"a":{"b":1}}')),
        ("params: object in list", with_params(data, b'{"a":[{}]}')),
        ("params: deep nesting", with_params(data, b"[" * 2048 + b"]" * 2048)),
        ("params: whitespace", with_params(data, b'{"a": 1}')),
        ("params: unsorted keys", with_params(data, b'{"b":1,"a":2}')),
        ("params: duplicate keys", with_params(data, b'{"a":1,"a":1}')),
        ("params: NaN", with_params(data, b'{"a":NaN}')),
        ("params: Infinity", with_params(data, b'{"a":-Infinity}')),
        ("params: lone surrogate", with_params(data, b'{"a":"\\ud800"}')),
        ("params: trailing junk", with_params(data, b'{"a":1}x')),
        ("params: non-canonical number", with_params(data, b'{"a":1e5}')),
        ("params: escaped ascii", with_params(data, b'{"\\u0061":1}')),
        ("params: too long", with_params(data, b'{"a":"' + b"x" * 4100 + b'"}')),
        ("params: NUL", with_params(data, b"{}\0")),
    ]
    return [(label, mutated) for label, mutated in edits if mutated != data]


def _header_boundaries(data: bytes) -> list[int]:
    cuts = {0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 17, 18, FIXED_END}
    try:
        lay = layout(data)
        cuts |= {lay["payload_len_at"], lay["payload_len_at"] + 2, lay["payload_at"], lay["crc_at"]}
    except struct.error:
        pass
    cuts |= {len(data) - 4, len(data) - 1}
    return sorted(c for c in cuts if 0 <= c < len(data))


def mutations(data: bytes, count: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """Yield ``count`` deterministic hostile variants of the valid file ``data`` as ``(label, bytes)``.

    Kinds, taken round-robin (the finite kinds drop out once exhausted): single bit flips
    anywhere, single bit flips in the header, several bit flips, truncations at every header
    field boundary, truncations at random lengths (0 included), appended garbage, random byte
    overwrites, and :func:`crafted` header edits with the CRC recomputed. Every variant differs
    from ``data``.
    """
    data = bytes(data)
    if not data:
        raise ValueError("mutations() needs a non-empty valid file")
    rng = random.Random(seed)
    n = len(data)
    try:
        header_end = min(layout(data)["payload_at"], n)
    except struct.error:
        header_end = min(FIXED_END, n)

    def flip(buf: bytearray, pos: int) -> int:
        bit = rng.randrange(8)
        buf[pos] ^= 1 << bit
        return bit

    def bit_flip() -> Iterator[tuple[str, bytes]]:
        while True:
            buf = bytearray(data)
            pos = rng.randrange(n)
            bit = flip(buf, pos)
            yield f"flip bit {bit} of byte {pos}", bytes(buf)

    def header_flip() -> Iterator[tuple[str, bytes]]:
        while True:
            buf = bytearray(data)
            pos = rng.randrange(header_end)
            bit = flip(buf, pos)
            yield f"flip header bit {bit} of byte {pos}", bytes(buf)

    def multi_flip() -> Iterator[tuple[str, bytes]]:
        while True:
            buf = bytearray(data)
            k = rng.randint(2, 16)
            for _ in range(k):
                flip(buf, rng.randrange(header_end if rng.random() < 0.5 else n))
            if buf != data:
                yield f"flip {k} bits", bytes(buf)

    def boundary_truncations() -> Iterator[tuple[str, bytes]]:
        for cut in _header_boundaries(data):
            yield f"truncate to {cut} bytes (boundary)", data[:cut]

    def random_truncations() -> Iterator[tuple[str, bytes]]:
        yield "truncate to 0 bytes", b""
        while True:
            cut = rng.randrange(n)
            yield f"truncate to {cut} bytes", data[:cut]

    def appended() -> Iterator[tuple[str, bytes]]:
        yield "append NUL", data + b"\0"
        while True:
            extra = rng.randbytes(rng.randint(1, 64))
            yield f"append {len(extra)} random bytes", data + extra

    def overwrites() -> Iterator[tuple[str, bytes]]:
        while True:
            buf = bytearray(data)
            k = rng.randint(1, 8)
            for _ in range(k):
                pos = rng.randrange(header_end if rng.random() < 0.5 else n)
                buf[pos] ^= rng.randint(1, 255)  # never a no-op on its own
            if buf != data:
                yield f"overwrite {k} bytes", bytes(buf)

    kinds: list[Iterator[tuple[str, bytes]]] = [
        bit_flip(),
        header_flip(),
        multi_flip(),
        boundary_truncations(),
        random_truncations(),
        appended(),
        overwrites(),
        iter(crafted(data)),
    ]
    produced = 0
    while produced < count and kinds:
        for kind in list(kinds):
            if produced >= count:
                break
            try:
                label, mutated = next(kind)
            except StopIteration:
                kinds.remove(kind)
                continue
            if mutated == data:
                continue
            produced += 1
            yield label, mutated



def payload_flips(data: bytes, count: int, seed: int) -> list[tuple[str, bytes]]:
    """``count`` variants of ``data`` with 1-3 bits flipped inside the payload and the CRC fixed,
    so they reach the codec's own decoder (entropy decoding and structure checks)."""
    import numpy as np

    where = layout(data)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        buf = bytearray(data)
        for _ in range(1 + i % 3):
            pos = where["payload_at"] + int(rng.integers(where["payload_len"]))
            buf[pos] ^= 1 << int(rng.integers(8))
        out.append((f"payload flip {i}", with_fixed_crc(bytes(buf))))
    return out


def decode_hostile(cases, decode, check) -> tuple[int, float]:
    """Decode every ``(label, data)`` case: ``FormatError`` is the expected outcome, any other
    project error fails the test; a case that decodes is passed to ``check(label, image)``.
    Returns how many decoded and the seconds it all took."""
    import time

    import pytest

    from neural_collages.errors import CollageError, FormatError

    start = time.perf_counter()
    accepted = 0
    for label, data in cases:
        try:
            image = decode(data)
        except FormatError:
            continue
        except CollageError as exc:  # pragma: no cover - reported with the label
            pytest.fail(f"{label}: {type(exc).__name__}: {exc}")
        accepted += 1
        check(label, image)
    return accepted, time.perf_counter() - start
