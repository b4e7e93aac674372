"""``.clg`` files on disk: read with the size checked before anything is read, written atomically."""

from __future__ import annotations

import os
import stat

from ..coding import container
from ..coding.container import ContainerHeader, pack, unpack
from ..errors import FormatError
from ..imaging.atomic import atomic_write_bytes


def write_container(path: str | os.PathLike, header: ContainerHeader, payload: bytes, force: bool = False) -> None:
    """Pack and write a `.clg` file atomically.

    Raises :class:`ConfigurationError` like :func:`pack` (before touching the file system),
    :class:`~neural_collages.errors.OutputExistsError` if ``path`` exists and ``force`` is false,
    and :class:`~neural_collages.errors.ImageError` if the file cannot be written (see
    :func:`neural_collages.imaging.atomic.atomic_write_bytes`).
    """
    atomic_write_bytes(path, pack(header, payload), force=force)


def read_container(path: str | os.PathLike) -> tuple[ContainerHeader, bytes]:
    """Read and :func:`unpack` a `.clg` file.

    The file is stat-ed first: a missing path, a directory or other non-regular file, and a file
    larger than :data:`~neural_collages.coding.container.MAX_FILE_BYTES` raise :class:`FormatError` without reading anything; at
    most ``container.MAX_FILE_BYTES + 1`` bytes are ever read (in case the file grows meanwhile). Every
    error message names ``path``.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise FormatError(f"{path}: is a directory, not a .clg file")
    if not stat.S_ISREG(st.st_mode):
        raise FormatError(f"{path}: not a regular file")
    if st.st_size > container.MAX_FILE_BYTES:
        raise FormatError(
            f"{path}: {st.st_size} bytes is larger than the largest possible .clg file ({container.MAX_FILE_BYTES} bytes)"
        )
    try:
        with open(path, "rb") as f:
            # Ask for one byte more than stat reported, to notice a file that grew since.
            data = f.read(st.st_size + 1)
            if len(data) > st.st_size:
                data += f.read(container.MAX_FILE_BYTES + 1 - len(data))
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > container.MAX_FILE_BYTES:
        raise FormatError(f"{path}: larger than the largest possible .clg file ({container.MAX_FILE_BYTES} bytes)")
    try:
        return unpack(data)
    except FormatError as exc:
        raise FormatError(f"{path}: {exc}") from None
