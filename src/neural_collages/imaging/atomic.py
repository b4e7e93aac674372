"""Atomic file writes: a reader sees the old file or the whole new one, never a partial write.

On Linux the bytes go to an *unnamed* file (``O_TMPFILE``) that is linked into place only once it
is complete and fsynced, so a process killed mid-write (even by SIGKILL) leaves nothing behind.
Where ``O_TMPFILE`` is missing (other systems, some filesystems) a hidden named temporary
``.<name>.<12 hex>.tmp`` is used and renamed; stale ones of that exact pattern, older than
:data:`STALE_SECONDS`, are removed by the next write of the same name.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import time
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
        if _write_unnamed(parent, path, data, force):
            _fsync_dir(parent)
            return
        _remove_stale_temps(parent, path.name)
        tmp, fd = _create_temp(parent, path.name)
        try:
            _write_all(fd, data)
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


#: Age after which a named temporary of ours is taken for the leftover of a killed writer.
STALE_SECONDS = 3600


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)


def _write_unnamed(parent: Path, path: Path, data, force: bool) -> bool:
    """Write through an ``O_TMPFILE`` inode linked into place; False where that is not possible."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        fd = os.open(parent, flag | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return False  # the kernel or the filesystem has no O_TMPFILE: use a named temporary
        raise
    proc = None
    try:
        _write_all(fd, data)
        # linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N names the unnamed inode; os.link only
        # passes that flag when given a directory fd (plain link() would link the symlink: EXDEV).
        proc = os.open("/proc/self/fd", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        source = str(fd)

        def link(target):
            os.link(source, target, src_dir_fd=proc, follow_symlinks=True)

        try:
            link(path)  # fails if path exists: never clobbers without force
            return True
        except FileExistsError:
            if not force:
                raise
        # Replacing an existing file needs a name to rename from; it exists only for the rename.
        for _ in range(100):
            tmp = os.path.join(parent, f".{path.name}.{secrets.token_hex(6)}.tmp")
            try:
                link(tmp)
                break
            except FileExistsError:
                continue
        else:
            raise OSError(f"could not create a temporary file in {parent}")
        try:
            os.replace(tmp, path)
        except OSError:
            os.unlink(tmp)
            raise
        return True
    finally:
        os.close(fd)
        if proc is not None:
            os.close(proc)


def _remove_stale_temps(parent: Path, name: str) -> None:
    pattern = re.compile(rf"^\.{re.escape(name)}\.[0-9a-f]{{12}}\.tmp$")
    now = time.time()
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        if pattern.match(entry.name):
            try:
                if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                    os.unlink(entry.path)
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
