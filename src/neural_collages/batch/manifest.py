"""The batch manifest: one JSON object per line, the latest line per input is what counts.

Lines are appended as jobs finish, each flushed and fsynced: a ``pending`` line just before an
output file is written, an ``ok`` line once it is in place. So a killed run leaves a manifest
that is true of the disk, and a torn last line is ignored on reading. A complete run rewrites
the file atomically with the latest line per input, sorted by path. Keys:

``path`` (input, relative to the source, ``/``-separated), ``output`` (relative to the
destination), ``status`` (``ok``, ``pending`` or ``failed``), ``message`` (why it failed, else
empty), ``input_bytes``, ``input_sha256``, ``output_bytes``, ``output_sha256`` (of the output
this tool wrote, kept on a failed line when an earlier output stays on disk), ``width``,
``height`` (of the input image), ``bpp`` (bits of the ``.clg`` file per image pixel), ``psnr``
(dB, the file's 1x decode against the input, when compressing; null for an exact decode),
``seconds`` (encode or decode time on the worker), ``settings`` (what made the output: codec,
quality, model, alpha; or scale and format) and ``finished`` (UTC time).
Null where a value does not apply or the job failed before it was known.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from ..errors import CollageError
from ..imaging.atomic import atomic_write_bytes

#: Longest manifest line read back (a line is ~400 bytes; longer ones are not ours).
MAX_LINE_BYTES = 1 << 16
#: Largest manifest read back (about two million entries).
MAX_MANIFEST_BYTES = 1 << 30
MANIFEST_NAME = "manifest.jsonl"


@dataclass(frozen=True)
class ManifestRecord:
    """One finished job."""

    path: str
    output: str
    status: str
    input_bytes: int
    input_sha256: str
    settings: dict = field(default_factory=dict)
    message: str = ""
    output_bytes: int | None = None
    output_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    bpp: float | None = None
    psnr: float | None = None
    seconds: float | None = None
    finished: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False)


_FIELDS = {f.name for f in fields(ManifestRecord)}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256(data) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _parse(line: bytes) -> ManifestRecord | None:
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or not _FIELDS.issuperset(obj):
        return None
    try:
        record = ManifestRecord(**obj)
    except TypeError:
        return None
    if not (isinstance(record.path, str) and isinstance(record.output, str) and isinstance(record.settings, dict)
            and record.status in ("ok", "pending", "failed") and isinstance(record.input_sha256, str)):
        return None
    return record


def read_manifest(path: str | os.PathLike) -> dict[str, ManifestRecord]:
    """The latest record per input path (``{}`` if there is no manifest); unreadable lines are skipped."""
    path = Path(path)
    if not path.exists():
        return {}
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise CollageError(f"{path}: manifest larger than {MAX_MANIFEST_BYTES:,} bytes; refusing to read it")
    records: dict[str, ManifestRecord] = {}
    with open(path, "rb") as f:
        while line := f.readline(MAX_LINE_BYTES + 1):
            if len(line) > MAX_LINE_BYTES:  # not ours: skip the rest of the line
                while line and not line.endswith(b"\n"):
                    line = f.readline(MAX_LINE_BYTES)
                continue
            record = _parse(line)
            if record is not None:
                records[record.path] = record
    return records


class ManifestWriter:
    """Appends records durably; :meth:`compact` rewrites the file with the latest one per input."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records = read_manifest(self.path)
        self._file = open(self.path, "ab")
        # A run killed mid-line left a torn line: start ours on a fresh one.
        if self._file.tell() > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write(b"\n")

    def append(self, record: ManifestRecord) -> None:
        self._file.write(record.to_json().encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.records[record.path] = record

    def compact(self) -> None:
        """Replace the file (atomically) by the latest record per input, sorted by path."""
        self._file.close()
        text = "".join(self.records[p].to_json() + "\n" for p in sorted(self.records))
        atomic_write_bytes(self.path, text.encode(), force=True)
        self._file = open(self.path, "ab")

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
