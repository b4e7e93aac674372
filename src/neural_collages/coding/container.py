"""The `.clg` container: the one file format every codec of this project writes.

A `.clg` file wraps one compressed image. The container records which codec made it, the image
size, the codec's parameters (a small JSON object) and the codec's payload, which is opaque bytes
to the container. Every codec (the fractal PIFS codec, the Neural Collage codec, ...) reads and
writes its files through this module, so they all share one header, one set of limits and one
set of integrity checks.

## Byte layout (format version 1)

All integers are unsigned and little-endian. A 19-byte fixed header is followed by the variable
parts:

| Offset      | Size | Field          | Meaning                                                   |
|-------------|------|----------------|-----------------------------------------------------------|
| 0           | 4    | magic          | `b"NCLG"`                                                 |
| 4           | 1    | version        | format version, `1`                                       |
| 5           | 1    | codec id       | `1` = `pifs`, `2` = `neural`, `3` = `fractal-art`          |
| 6           | 2    | flags          | reserved, must be `0` in version 1                        |
| 8           | 4    | width          | image width in pixels, `1 ≤ width ≤ 65535`                |
| 12          | 4    | height         | image height in pixels, `1 ≤ height ≤ 65535`              |
| 16          | 1    | channels       | `1` (grey) or `3` (RGB)                                   |
| 17          | 2    | params length  | `P`, `0 ≤ P ≤ 4096`                                       |
| 19          | P    | params         | canonical UTF-8 JSON object (see below)                   |
| 19+P        | 4    | payload length | `N`, `0 ≤ N ≤ 256 MiB`                                    |
| 23+P        | N    | payload        | the codec's bytes                                         |
| 23+P+N      | 4    | CRC32          | `zlib.crc32` of bytes `[0, 23+P+N)`                       |

The file is exactly `27 + P + N` bytes long, so at most `MAX_FILE_BYTES` = 27 + 4096 + 256 MiB
bytes (a valid file has at least 29: the smallest params are `{}`). Nothing may follow the CRC.

**Params.** A JSON object serialised canonically: keys sorted, no whitespace
(`json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)`), UTF-8 encoded, at most `MAX_PARAMS_BYTES` = 4096 bytes. Keys are strings.
Values are `null`, booleans, integers, finite floats, strings, or flat lists of those (a list
inside a list, or an object as a value, is not allowed). A reader rejects params that are not
byte-for-byte in this canonical form (so duplicate keys, unsorted keys, whitespace, `NaN` and
non-canonical number spellings are all errors), which makes the encoding of a header unique:
`pack(*unpack(data)) == data` for every file `unpack` accepts.

**Image size.** Besides the per-side limit, `width × height` must not exceed
`neural_collages.limits.MAX_PIXELS` (2**26 by default; read at call time), the largest image
the project handles.

## Reading order (what a reader checks, and in which order)

A decoder treats every file as hostile. `unpack` checks, in this order, and raises
`FormatError` with one message at the first problem:

1. the magic (`not a .clg file`, or truncated when the input is a prefix of the magic);
2. the version byte (`unsupported format version N (this build reads 1)`), since a later
   version may lay out everything after it differently;
3. the length fields against their limits and against the actual data length, before
   anything is sliced or allocated (`truncated .clg file ...` when the data is shorter than
   the header implies, `... trailing bytes ...` when it is longer);
4. the CRC32 (`checksum mismatch`);
5. the codec id, flags, image size and channel count;
6. the params JSON.

No size field read from a file ever drives an allocation: the only allocation is the copy of
the payload, whose length has been checked against both `MAX_PAYLOAD_BYTES` and the real data
length. `read_container` (`neural_collages.codecs.files`) stats the file first and refuses anything larger than
`MAX_FILE_BYTES` before reading it, then reads at most `MAX_FILE_BYTES + 1` bytes.

## Compatibility

Readers reject any version other than the one they implement. A change to the layout, the
params rules or the limits that an old reader would misread requires a new version number;
new codec ids may be added without one (old readers reject them with `unknown codec id`).
Reserved flag bits must be zero so a later version may give them meaning.

## API

* `ContainerHeader(codec, width, height, channels, params, version=1)`
* `pack(header, payload) -> bytes` and `unpack(data) -> (header, payload)`
* on disk (`neural_collages.codecs.files`): `write_container(path, header, payload, force=False)`
  and `read_container(path)`
* `describe(header, payload_size, file_size) -> str` for `collage info FILE`

Writing validates and raises `ConfigurationError`; reading raises `FormatError` for every
problem with the bytes (and `ConfigurationError` only when `unpack` is given something that is
not bytes-like at all).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from .. import limits
from ..errors import ConfigurationError, FormatError

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "EXTENSION",
    "CODEC_NAMES",
    "CODEC_IDS",
    "MAX_DIMENSION",
    "MAX_PARAMS_BYTES",
    "MAX_PAYLOAD_BYTES",
    "FIXED_HEADER_SIZE",
    "MIN_FILE_BYTES",
    "MAX_FILE_BYTES",
    "ContainerHeader",
    "pack",
    "unpack",
    "describe",
]

#: The first four bytes of every `.clg` file.
MAGIC = b"NCLG"
#: The only format version this build reads and writes.
FORMAT_VERSION = 1
#: File name extension of the container.
EXTENSION = ".clg"
#: Codec ids stored in byte 5, and the names the API uses for them.
CODEC_NAMES: dict[int, str] = {1: "pifs", 2: "neural", 3: "fractal-art"}
#: Inverse of :data:`CODEC_NAMES`.
CODEC_IDS: dict[str, int] = {name: cid for cid, name in CODEC_NAMES.items()}
#: Largest width or height.
MAX_DIMENSION = 65535
#: Largest params section (canonical JSON, in bytes).
MAX_PARAMS_BYTES = 4096
#: Largest payload (256 MiB).
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024
#: Valid channel counts.
CHANNELS = (1, 3)

# magic, version, codec id, flags, width, height, channels, params length
_FIXED = struct.Struct("<4sBBHIIBH")
_U32 = struct.Struct("<I")
#: Size of the fixed part of the header (everything before the params).
FIXED_HEADER_SIZE = _FIXED.size  # 19
#: Smallest possible file: fixed header, payload length and CRC, with empty params and payload.
MIN_FILE_BYTES = FIXED_HEADER_SIZE + 2 * _U32.size  # 27
#: Largest possible file.
MAX_FILE_BYTES = MIN_FILE_BYTES + MAX_PARAMS_BYTES + MAX_PAYLOAD_BYTES

_SCALARS = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class ContainerHeader:
    """What a `.clg` file says about its image, besides the payload.

    ``codec`` is the codec's name (a value of :data:`CODEC_NAMES`, e.g. ``"pifs"``); ``params``
    is a flat JSON-able dict (see the module docstring). :func:`pack` validates all fields.
    Tuples in ``params`` are written as JSON lists and so come back as lists.
    """

    codec: str
    width: int
    height: int
    channels: int
    params: dict = field(default_factory=dict)
    version: int = FORMAT_VERSION


# --------------------------------------------------------------------------------------------
# params


def _check_value(key: str, value: Any, fail, nested: bool = False) -> None:
    if isinstance(value, (list, tuple)) and not nested:
        for item in value:
            _check_value(key, item, fail, nested=True)
        return
    if isinstance(value, (list, tuple, dict)):
        where = "inside a list" if nested else "as a value"
        fail(f"params[{key!r}]: a {type(value).__name__} {where} is not allowed (only flat lists of scalars)")
    if type(value) not in _SCALARS:
        fail(
            f"params[{key!r}]: {type(value).__name__} is not allowed "
            "(use int, float, str, bool, None or a flat list of those)"
        )
    if type(value) is float and not math.isfinite(value):
        fail(f"params[{key!r}]: {value} is not allowed (floats must be finite)")


def _check_params(params: Any, fail) -> None:
    if not isinstance(params, dict):
        fail(f"params must be a dict / JSON object, got {type(params).__name__}")
    for key, value in params.items():
        if not isinstance(key, str):
            fail(f"params keys must be strings, got {key!r}")
        _check_value(key, value, fail)


def _encode_params(params: dict) -> bytes:
    """Canonical JSON bytes of already type-checked params (may raise UnicodeEncodeError)."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def _config_fail(message: str):
    raise ConfigurationError(message)


def _format_fail(message: str):
    raise FormatError(f"invalid params in .clg file: {message}")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _no_duplicates(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _decode_params(raw: bytes) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(
            f"invalid params in .clg file: not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        params = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        # json.JSONDecodeError is a ValueError; deep nesting can exhaust the recursion limit.
        raise FormatError(f"invalid params in .clg file: not valid JSON ({exc})") from None
    _check_params(params, _format_fail)
    try:
        canonical = _encode_params(params)
    except (ValueError, UnicodeEncodeError):
        # e.g. a lone surrogate written as a \\ud800 escape
        raise FormatError("invalid params in .clg file: strings must be valid Unicode") from None
    if canonical != raw:
        raise FormatError(
            "invalid params in .clg file: JSON is not in canonical form "
            "(sorted keys, no whitespace, shortest number spelling)"
        )
    return params


# --------------------------------------------------------------------------------------------
# pack / unpack


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def pack(header: ContainerHeader, payload: bytes) -> bytes:
    """Serialise ``header`` and ``payload`` into the bytes of a `.clg` file.

    Deterministic: the same header (whatever the order of ``params`` keys) and payload always
    give the same bytes. Raises :class:`ConfigurationError` for an unknown codec name, a version
    other than :data:`FORMAT_VERSION`, an image size or channel count outside the limits, params
    that are not a flat JSON-able dict or exceed :data:`MAX_PARAMS_BYTES` once encoded, or a
    payload that is not bytes-like or exceeds :data:`MAX_PAYLOAD_BYTES`.
    """
    if not isinstance(header, ContainerHeader):
        raise ConfigurationError(f"header must be a ContainerHeader, got {type(header).__name__}")
    version = _check_int("version", header.version)
    if version != FORMAT_VERSION:
        raise ConfigurationError(f"cannot write format version {version} (this build writes {FORMAT_VERSION})")
    if not isinstance(header.codec, str) or header.codec not in CODEC_IDS:
        known = ", ".join(repr(name) for name in CODEC_IDS)
        raise ConfigurationError(f"unknown codec {header.codec!r} (known codecs: {known})")
    width = _check_int("width", header.width)
    height = _check_int("height", header.height)
    for name, value in (("width", width), ("height", height)):
        if not 1 <= value <= MAX_DIMENSION:
            raise ConfigurationError(f"image {name} {value} is out of range (1..{MAX_DIMENSION})")
    if width * height > limits.MAX_PIXELS:
        raise ConfigurationError(
            f"image size {width}x{height} has {width * height} pixels, more than "
            f"neural_collages.limits.MAX_PIXELS = {limits.MAX_PIXELS}"
        )
    channels = _check_int("channels", header.channels)
    if channels not in CHANNELS:
        raise ConfigurationError(f"channels must be 1 or 3, got {channels}")

    _check_params(header.params, _config_fail)
    try:
        params = _encode_params(header.params)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ConfigurationError(f"params cannot be encoded as UTF-8 JSON: {exc}") from None
    if len(params) > MAX_PARAMS_BYTES:
        raise ConfigurationError(
            f"params take {len(params)} bytes as JSON, more than the {MAX_PARAMS_BYTES} allowed; "
            "store large data in the payload"
        )

    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ConfigurationError(f"payload must be bytes, got {type(payload).__name__}")
    if not isinstance(payload, bytes):
        payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ConfigurationError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")

    head = _FIXED.pack(MAGIC, version, CODEC_IDS[header.codec], 0, width, height, channels, len(params))
    body = b"".join((head, params, _U32.pack(len(payload)), payload))
    return body + _U32.pack(zlib.crc32(body))


def _as_view(data: Any) -> memoryview:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ConfigurationError(f"unpack() needs bytes, got {type(data).__name__}")
    try:
        if isinstance(data, memoryview) and not (data.ndim == 1 and data.format == "B" and data.c_contiguous):
            data = data.tobytes()
        return memoryview(data)
    except ValueError as exc:  # a released memoryview
        raise ConfigurationError(f"unpack() cannot read its argument: {exc}") from None


def unpack(data: bytes) -> tuple[ContainerHeader, bytes]:
    """Parse the bytes of a `.clg` file into its header and payload.

    Raises :class:`FormatError` with one message for any problem with the bytes (see the module
    docstring for the checks and their order), and :class:`ConfigurationError` if ``data`` is
    not bytes, bytearray or memoryview. Never allocates more than the payload's length, which is
    checked against the real data length first.
    """
    with _as_view(data) as view:
        return _unpack_view(view)


def _unpack_view(view: memoryview) -> tuple[ContainerHeader, bytes]:
    size = len(view)
    if size < len(MAGIC) or view[: len(MAGIC)] != MAGIC:
        if size == 0:
            raise FormatError("not a .clg file: the data is empty")
        if size < len(MAGIC) and MAGIC.startswith(view.tobytes()):
            raise FormatError(
                f"truncated .clg file: only {size} of the {MIN_FILE_BYTES} bytes of the smallest file"
            )
        raise FormatError(
            f"not a .clg file: it starts with {view[:4].tobytes()!r}, expected {MAGIC!r}"
        )
    if size > len(MAGIC):
        version = view[len(MAGIC)]
        if version != FORMAT_VERSION:
            raise FormatError(f"unsupported format version {version} (this build reads {FORMAT_VERSION})")
    if size < FIXED_HEADER_SIZE:
        raise FormatError(
            f"truncated .clg file: {size} bytes, shorter than the {FIXED_HEADER_SIZE}-byte fixed header"
        )
    _magic, version, codec_id, flags, width, height, channels, params_len = _FIXED.unpack_from(view)

    if params_len > MAX_PARAMS_BYTES:
        raise FormatError(
            f"corrupt .clg file: params length {params_len} exceeds the {MAX_PARAMS_BYTES}-byte limit"
        )
    payload_len_at = FIXED_HEADER_SIZE + params_len
    if size < payload_len_at + _U32.size:
        raise FormatError(
            f"truncated .clg file: {size} bytes, but the header says the params "
            f"({params_len} bytes) and payload length end at byte {payload_len_at + _U32.size}"
        )
    (payload_len,) = _U32.unpack_from(view, payload_len_at)
    if payload_len > MAX_PAYLOAD_BYTES:
        raise FormatError(
            f"corrupt .clg file: payload length {payload_len} exceeds the {MAX_PAYLOAD_BYTES}-byte limit"
        )
    payload_at = payload_len_at + _U32.size
    crc_at = payload_at + payload_len
    expected = crc_at + _U32.size
    if size < expected:
        raise FormatError(f"truncated .clg file: the header implies {expected} bytes, got only {size}")
    if size > expected:
        raise FormatError(
            f"corrupt .clg file: {size - expected} trailing bytes after the end of the container "
            f"(the header implies {expected} bytes, got {size})"
        )

    (stored_crc,) = _U32.unpack_from(view, crc_at)
    actual_crc = zlib.crc32(view[:crc_at])
    if stored_crc != actual_crc:
        raise FormatError(
            f"corrupt .clg file: checksum mismatch (stored 0x{stored_crc:08x}, computed 0x{actual_crc:08x})"
        )

    if codec_id not in CODEC_NAMES:
        known = ", ".join(f"{cid}={name}" for cid, name in CODEC_NAMES.items())
        raise FormatError(f"unknown codec id {codec_id} (this build knows {known})")
    if flags != 0:
        raise FormatError(f"unsupported .clg file: reserved flags 0x{flags:04x} are set (must be 0 in version 1)")
    for name, value in (("width", width), ("height", height)):
        if not 1 <= value <= MAX_DIMENSION:
            raise FormatError(f"corrupt .clg file: image {name} {value} is out of range (1..{MAX_DIMENSION})")
    if width * height > limits.MAX_PIXELS:
        raise FormatError(
            f"corrupt .clg file: image size {width}x{height} has {width * height} pixels, more than "
            f"the {limits.MAX_PIXELS} allowed (neural_collages.limits.MAX_PIXELS)"
        )
    if channels not in CHANNELS:
        raise FormatError(f"corrupt .clg file: channel count {channels} (must be 1 or 3)")

    params = _decode_params(view[FIXED_HEADER_SIZE:payload_len_at].tobytes())
    header = ContainerHeader(
        codec=CODEC_NAMES[codec_id], width=width, height=height, channels=channels, params=params, version=version
    )
    return header, view[payload_at:crc_at].tobytes()


# --------------------------------------------------------------------------------------------
# files


def describe(header: ContainerHeader, payload_size: int, file_size: int) -> str:
    """A human-readable multi-line summary of a `.clg` file, as ``collage info FILE`` prints it."""
    if not isinstance(header, ContainerHeader):
        raise ConfigurationError(f"header must be a ContainerHeader, got {type(header).__name__}")
    payload_size = _check_int("payload_size", payload_size)
    file_size = _check_int("file_size", file_size)
    if payload_size < 0 or file_size < 0:
        raise ConfigurationError("payload_size and file_size must be non-negative")
    pixels = header.width * header.height
    bpp = 8 * file_size / pixels if pixels > 0 else float("nan")
    colour = {1: "grey", 3: "RGB"}.get(header.channels, "?")
    codec_id = CODEC_IDS.get(header.codec)
    codec = f"{header.codec} (id {codec_id})" if codec_id is not None else str(header.codec)
    lines = [
        f"codec:       {codec}",
        f"version:     {header.version}",
        f"size:        {header.width}x{header.height} ({pixels:,} pixels)",
        f"channels:    {header.channels} ({colour})",
        f"file size:   {file_size:,} bytes",
        f"bits/pixel:  {bpp:.4f} bpp",
        f"payload:     {payload_size:,} bytes",
    ]
    params = header.params if isinstance(header.params, dict) else {}
    if params:
        lines.append("params:")
        width = max(len(str(key)) for key in params)
        for key in sorted(params, key=str):
            value = json.dumps(params[key], ensure_ascii=False, default=repr)
            lines.append(f"  {str(key):<{width}} = {value}")
    else:
        lines.append("params:      (none)")
    return "\n".join(lines)
