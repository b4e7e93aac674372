"""The project's small JSON documents (IFS files, mosaic layouts, corpus manifests), read as hostile input.

One reader for all of them (a leaf module, like :mod:`errors`): the size is bounded before
anything is parsed, NaN and Infinity are refused (JSON has neither), deep nesting is an error
rather than a crash, and the ``"format"`` and ``"version"`` members must name what the caller
reads. Each failure is one message naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import FormatError


def parse_document(text: str | bytes, source: str, *, kind: str, fmt: str, version: int, max_bytes: int,
                   error: type[Exception] = FormatError, hint: str = "") -> dict:
    """The JSON object in ``text`` whose ``format`` is ``fmt`` and ``version`` is ``version``.

    ``kind`` names the document in messages ("IFS file"); ``hint`` is appended to each message.
    """
    fail = _Failure(source, kind, error, hint)
    if len(text) > max_bytes:
        raise fail.too_large(max_bytes)
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise fail(f"corrupt {kind}, not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise fail(f"not {fail.article} {kind} (no \"format\": \"{fmt}\")")
    if doc.get("version") != version:
        raise fail(f"{kind} version {doc.get('version')!r}; this build reads version {version}")
    return doc


def read_document(path: str | Path, *, kind: str, fmt: str, version: int, max_bytes: int,
                  error: type[Exception] = FormatError, hint: str = "") -> dict:
    """:func:`parse_document` on a file, its size checked before it is read."""
    path = Path(path)
    fail = _Failure(str(path), kind, error, hint)
    try:
        if path.stat().st_size > max_bytes:
            raise fail.too_large(max_bytes)
        text = path.read_bytes()
    except FileNotFoundError:
        raise fail("no such file") from None
    except OSError as exc:
        raise fail(f"unreadable ({exc.strerror or exc})") from None
    return parse_document(text, str(path), kind=kind, fmt=fmt, version=version, max_bytes=max_bytes,
                          error=error, hint=hint)


class _Failure:
    """Builds the one error a document gets: the source first, the caller's hint last."""

    def __init__(self, source: str, kind: str, error: type[Exception], hint: str):
        self.source, self.kind, self.error, self.hint = source, kind, error, hint
        self.article = "an" if kind[:1].lower() in "aeiou" else "a"

    def __call__(self, message: str) -> Exception:
        return self.error(f"{self.source}: {message}" + (f"; {self.hint}" if self.hint else ""))

    def too_large(self, max_bytes: int) -> Exception:
        return self(f"larger than the {max_bytes:,} bytes {self.article} {self.kind} may have")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")
