"""Atomic file writes: a reader sees the old file or the whole new one, never a partial write."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..errors import ConfigurationError, ImageError, OutputExistsError


def atomic_write_bytes(path: str | os.PathLike, data: bytes, force: bool = False) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old file or the whole new one.

    The bytes go to a temporary file in the same directory, are fsynced, and are then renamed
    over ``path``. Without ``force`` an existing ``path`` is never touched and
    :class:`OutputExistsError` is raised. A missing parent directory, ``path`` being a
    directory, or an OS error while writing raise :class:`ImageError`; no temporary file is
    left behind either way.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ConfigurationError(f"data must be bytes, got {type(data).__name__}")
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise ImageError(f"cannot write {path}: directory {parent} does not exist")
    if path.is_dir():
        raise ImageError(f"cannot write {path}: it is a directory")
    if not force and os.path.lexists(path):
        raise OutputExistsError(f"{path} already exists; refusing to overwrite it (pass force=True to replace it)", path)

    tmp = None
    try:
        tmp, fd = _create_temp(parent, path.name)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.replace(tmp, path)
        else:
            _rename_no_overwrite(tmp, path)
        tmp = None
        _fsync_dir(parent)
    except FileExistsError as exc:
        raise OutputExistsError(
            f"{path} already exists; refusing to overwrite it (pass force=True to replace it)", path
        ) from exc
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _create_temp(parent: Path, name: str) -> tuple[str, int]:
    # os.open with mode 0o666 (unlike mkstemp's 0o600) lets the umask decide the final
    # file's permissions, as for any ordinary new file.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(parent, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise OSError(f"could not create a temporary file in {parent}")


def _rename_no_overwrite(tmp: str, path: Path) -> None:
    # A hard link fails if the target exists, so a file that appeared since our check is not
    # clobbered. Filesystems without hard links fall back to check-then-replace.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(path):
            raise FileExistsError(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, hence best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
