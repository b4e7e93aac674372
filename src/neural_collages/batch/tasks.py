"""What a worker computes: pure functions from bytes (or pixels) to bytes, run in any process.

Workers never touch the filesystem: the driver sends the input and writes what comes back, so a
cluster needs no shared disk. A job that fails on its input returns its message (``error``)
instead of raising, so one bad image is one failed line in the manifest and the batch goes on;
only a crashed worker reaches the driver as an exception.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import CollageError


@dataclass(frozen=True)
class EncodeSettings:
    """How every image of a batch is compressed (``quality``/``model`` ``None``: the codec's defaults).

    ``threads``: torch threads per job, the same on every engine, because the fractal encoder's
    choice between two near-equal domains can depend on the thread count (the order of a float
    sum): with one count, a file's bytes do not depend on where it was made.
    """

    codec: str = "pifs"
    quality: int | None = None
    model: str | None = None
    alpha: str | None = None
    threads: int = 1
    #: pifs: the domain search (``None``: exhaustive, the codec's default).
    search: str | None = None

    def as_dict(self) -> dict:
        # "search" only when set, so that manifests written before it existed still match.
        own = {"codec": self.codec, "quality": self.quality, "model": self.model, "alpha": self.alpha}
        return own if self.search is None else {**own, "search": self.search}


@contextmanager
def _threads(threads: int | None):
    """torch's thread count for one job, restored after it (a serial batch runs in the caller's process)."""
    import torch

    before = torch.get_num_threads()
    if threads and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _failure(exc: BaseException, name: str) -> dict:
    if isinstance(exc, CollageError):
        # The manifest line names the input already.
        return {"error": str(exc).removeprefix(f"{name}: ")}
    if isinstance(exc, MemoryError):
        return {"error": "out of memory while processing this input"}
    # Not a bad input we recognise: still one failed job, named so that it can be reported.
    return {"error": f"internal error ({type(exc).__name__}: {exc})"}


def warm_up(settings: EncodeSettings) -> None:
    """Load what the settings need (a neural model) once per worker, before the first job."""
    import torch

    from ..codecs import compress

    with _threads(settings.threads):
        compress(torch.full((3, 32, 32), 0.5), settings.codec, settings.quality, model=settings.model)


def compress_job(name: str, settings: EncodeSettings, data: bytes | None = None,
                 pixels: np.ndarray | None = None) -> dict:
    """Compress one image given as file bytes (``data``) or as ``uint8`` pixels ``(C, H, W)``.

    Returns ``output`` (the ``.clg`` bytes), ``width``, ``height``, ``seconds`` (encode time),
    ``psnr`` (the file's 1x decode against the input; ``None`` when they are identical), or
    ``error``.
    """
    try:
        import torch

        from ..codecs import compress, decompress
        from ..imaging.io import load_image_bytes, to_float
        from ..imaging.metrics import psnr

        if pixels is not None:
            image = to_float(torch.from_numpy(np.ascontiguousarray(pixels)))
        else:
            image = load_image_bytes(data, name, mode="keep", alpha=settings.alpha or "error")
        with _threads(settings.threads):
            t0 = time.perf_counter()
            out = compress(image, settings.codec, settings.quality, model=settings.model, search=settings.search)
            seconds = time.perf_counter() - t0
            value = float(psnr(image, decompress(out)))
        height, width = image.shape[-2:]
        return {"output": out, "width": int(width), "height": int(height), "seconds": seconds,
                "psnr": value if math.isfinite(value) else None}
    except Exception as exc:  # noqa: BLE001 - every failure becomes a manifest line (see _failure)
        return _failure(exc, name)


def decompress_job(name: str, data: bytes, scale: int = 1, suffix: str = ".png",
                   max_pixels: int | None = None, threads: int | None = None) -> dict:
    """Decode one ``.clg`` file to the bytes of an image file (``suffix`` picks the format).

    Returns ``output``, ``width``, ``height`` (of the 1x image), ``seconds`` (decode time) or ``error``.
    """
    try:
        import torch

        from ..codecs import decompress
        from ..coding.container import unpack
        from ..imaging.io import encode_image

        header = unpack(data)[0]
        with _threads(threads):
            t0 = time.perf_counter()
            image = decompress(data, scale=scale, max_pixels=max_pixels, dtype=torch.uint8)
            seconds = time.perf_counter() - t0
        return {"output": encode_image(image, suffix), "width": header.width, "height": header.height,
                "seconds": seconds}
    except Exception as exc:  # noqa: BLE001
        return _failure(exc, name)


def decode_tile_job(name: str, data: bytes, scale: int = 1, threads: int | None = None) -> dict:
    """Decode one tile to ``uint8`` pixels ``(C, s·h, s·w)`` (``pixels``), with ``seconds``, or ``error``."""
    try:
        import torch

        from ..codecs import decompress

        with _threads(threads):
            t0 = time.perf_counter()
            image = decompress(data, scale=scale, dtype=torch.uint8)
        return {"pixels": image.contiguous().numpy(), "seconds": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001
        return _failure(exc, name)
