"""Unsigned LEB128 varints: the one variable-length integer of every format in this project.

Writers emit the minimal encoding; readers treat bytes as hostile and refuse truncated,
non-minimal (a trailing ``0x00`` byte) or over-long encodings with a :class:`FormatError`.
"""

from __future__ import annotations

from ..errors import ConfigurationError, FormatError

#: 9 bytes hold 63 bits: every count and length a format stores, and nothing unbounded.
MAX_VARINT_BYTES = 9


def put_varint(out: bytearray, value: int) -> None:
    """Append ``value`` (0 ≤ value < 2**63) as a minimal LEB128 varint."""
    if value < 0 or value >= 1 << (7 * MAX_VARINT_BYTES):
        raise ConfigurationError(f"value {value} does not fit a varint")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def varint_length(value: int) -> int:
    """Bytes :func:`put_varint` writes for ``value``."""
    return max(1, (value.bit_length() + 6) // 7)


def read_varint(data: bytes, pos: int = 0, what: str = "varint") -> tuple[int, int]:
    """``(value, position after it)`` of the minimal varint at ``data[pos:]``; ``what`` names it in errors."""
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise FormatError(f"truncated data (reading the {what})")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise FormatError(f"non-minimal varint ({what})")
            return value, pos + i + 1
    raise FormatError(f"{what} varint longer than {MAX_VARINT_BYTES} bytes")


class ByteReader:
    """A cursor over hostile bytes; every problem is a :class:`FormatError`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.remaining():
            raise FormatError(f"truncated data (reading the {what})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self, what: str, limit: int) -> int:
        """A minimal varint ``<= limit``."""
        value, self.pos = read_varint(self.data, self.pos, what)
        if value > limit:
            raise FormatError(f"{what} = {value} exceeds its limit {limit}")
        return value
