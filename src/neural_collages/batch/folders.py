"""Folders: every image under a source becomes a ``.clg`` file under the destination (and back).

The relative path is kept and only the suffix changes (``trip/day1/a.jpg`` → ``trip/day1/a.clg``).
Two inputs that would share an output (``a.png`` and ``a.jpg``) both fail with a message saying
so, rather than one silently replacing the other. Symbolic links to directories are not followed.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from ..coding.container import EXTENSION
from ..errors import ConfigurationError
from ..imaging.io import IMAGE_SUFFIXES
from .runner import BatchSummary, Item, read_input, run_batch
from .tasks import EncodeSettings, compress_job, decompress_job, warm_up

#: Suffixes ``compress_folder`` picks up by default (case-insensitive).
DEFAULT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

__all__ = ["BatchSummary", "DEFAULT_SUFFIXES", "compress_folder", "decompress_folder", "find_inputs"]


def find_inputs(src: Path, suffixes, exclude: Path | None = None) -> list[str]:
    """Relative ``/``-separated paths of the files under ``src`` with one of ``suffixes``, sorted."""
    wanted = {s.lower() for s in suffixes}
    found = []
    skip = exclude.resolve() if exclude is not None else None
    for root, dirs, files in os.walk(src):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if skip is None or (here / d).resolve() != skip)
        for name in files:
            path = here / name
            if path.suffix.lower() in wanted and path.is_file():
                found.append(path.relative_to(src).as_posix())
    return sorted(found)


def _check_folders(src, dst) -> tuple[Path, Path]:
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise ConfigurationError(f"{src}: not a folder")
    if dst.exists() and not dst.is_dir():
        raise ConfigurationError(f"{dst}: exists and is not a folder")
    dst.mkdir(parents=True, exist_ok=True)
    return src, dst


def _items(src: Path, dst: Path, suffixes, out_suffix: str) -> list[Item]:
    inputs = find_inputs(src, suffixes, exclude=dst if dst.resolve() != src.resolve() else None)
    by_output: dict[str, list[str]] = {}
    for rel in inputs:
        by_output.setdefault(Path(rel).with_suffix(out_suffix).as_posix(), []).append(rel)
    items = []
    for rel in inputs:
        out = Path(rel).with_suffix(out_suffix).as_posix()
        clash = [other for other in by_output[out] if other != rel]
        problem = f"{rel} and {', '.join(clash)} would both be written to {out}; rename one" if clash else ""
        items.append(Item(rel, out, partial(_read_file, src / rel), problem))
    return items


def _read_file(path: Path):
    data = read_input(path)
    return data, data


def compress_folder(src, dst, settings: EncodeSettings | None = None, engine=None, suffixes=DEFAULT_SUFFIXES,
                    force: bool = False, progress: bool = True) -> BatchSummary:
    """Compress every image under ``src`` into ``dst`` (see the module docstring), on ``engine``.

    ``engine``: from :func:`neural_collages.batch.make_engine` (default: this process). Returns a
    :class:`BatchSummary`; per-file results are in ``dst/manifest.jsonl``.
    """
    from .engine import SerialEngine

    settings = settings or EncodeSettings()
    src, dst = _check_folders(src, dst)
    engine = engine or SerialEngine()
    items = _items(src, dst, suffixes, EXTENSION)

    def job(item: Item, data: bytes):
        return (item.path, settings), {"data": data}

    def record(result: dict, size: int) -> dict:
        w, h = result["width"], result["height"]
        return {"width": w, "height": h, "bpp": 8 * len(result["output"]) / (w * h), "psnr": result["psnr"],
                "seconds": result["seconds"]}

    return run_batch(items, dst, settings.as_dict(), compress_job, job, record, engine, force, progress, "image",
                     warm_up=(warm_up, settings))


def decompress_folder(src, dst, scale: int = 1, suffix: str = ".png", engine=None, force: bool = False,
                      progress: bool = True, max_pixels: int | None = None, threads: int | None = None) -> BatchSummary:
    """Decode every ``.clg`` file under ``src`` to an image under ``dst`` (format from ``suffix``)."""
    from .engine import SerialEngine

    if suffix.lower() not in IMAGE_SUFFIXES:
        raise ConfigurationError(f"unknown image suffix {suffix!r}; use one of {', '.join(sorted(IMAGE_SUFFIXES))}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ConfigurationError(f"scale must be a positive integer, got {scale!r}")
    src, dst = _check_folders(src, dst)
    engine = engine or SerialEngine()
    items = _items(src, dst, (EXTENSION,), suffix.lower())

    def job(item: Item, data: bytes):
        return (item.path, data), {"scale": scale, "suffix": suffix.lower(), "max_pixels": max_pixels,
                                   "threads": threads}

    def record(result: dict, size: int) -> dict:
        w, h = result["width"], result["height"]
        return {"width": w, "height": h, "bpp": 8 * size / (w * h), "seconds": result["seconds"]}

    return run_batch(items, dst, {"scale": scale, "format": suffix.lower()}, decompress_job, job, record, engine,
                     force, progress, "file")
