"""Large rasters as a grid of tiles: each tile its own ``.clg`` file, ``mosaic.json`` to put them back.

``tile_image`` cuts an image (an orthophoto, a 20 MP photo) into ``tile``-px squares (smaller at
the right and bottom edges), compresses them as independent jobs and, once every tile is in
place, writes ``mosaic.json``:

``{"format": "neural-collages/mosaic", "version": 1, "width", "height", "channels", "tile",
"rows", "cols", "source", "settings", "tiles": [{"row", "col", "x", "y", "width", "height",
"file", "bytes", "sha256"}, ...]}`` — tiles in row-major order, files named ``rRRR-cCCC.clg``.

``mosaic_image`` treats that file and the tiles as hostile: the layout must be exactly the grid its
width, height and tile size imply, every tile file must have the recorded size and digest and a
header of the recorded size, and the output's pixel count is checked before anything is allocated.
Tiles are coded independently, so tile borders are block borders (no domain crosses them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import limits
from ..errors import CollageError, ConfigurationError, FormatError
from ..imaging.atomic import atomic_write_bytes
from ..jsondoc import read_document
from .engine import SerialEngine, crash_message
from .manifest import file_sha256
from .runner import BatchSummary, Item, run_batch
from .tasks import EncodeSettings, compress_job, decode_tile_job, warm_up

LAYOUT_NAME = "mosaic.json"
LAYOUT_FORMAT = "neural-collages/mosaic"
LAYOUT_VERSION = 1
#: Tile sides are multiples of 32 (the neural codec's crop) between these bounds.
MIN_TILE, MAX_TILE = 32, 8192
MAX_LAYOUT_BYTES = 1 << 24
MAX_TILES = 1 << 20
_TILE_FILE = re.compile(r"^r(\d{3,})-c(\d{3,})\.clg$")


@dataclass(frozen=True)
class Tile:
    row: int
    col: int
    x: int
    y: int
    width: int
    height: int
    file: str
    bytes: int = 0
    sha256: str = ""


@dataclass(frozen=True)
class MosaicLayout:
    width: int
    height: int
    channels: int
    tile: int
    tiles: tuple[Tile, ...]
    source: str = ""
    settings: dict | None = None

    @property
    def rows(self) -> int:
        return -(-self.height // self.tile)

    @property
    def cols(self) -> int:
        return -(-self.width // self.tile)


def grid(width: int, height: int, tile: int) -> list[Tile]:
    """The tiles of a ``width`` × ``height`` image, row-major."""
    return [Tile(r, c, x, y, min(tile, width - x), min(tile, height - y), f"r{r:03d}-c{c:03d}.clg")
            for r, y in enumerate(range(0, height, tile)) for c, x in enumerate(range(0, width, tile))]


def check_tile_size(tile) -> int:
    if isinstance(tile, bool) or not isinstance(tile, int) or not MIN_TILE <= tile <= MAX_TILE or tile % 32:
        raise ConfigurationError(f"tile must be a multiple of 32 in [{MIN_TILE}, {MAX_TILE}], got {tile!r}")
    return tile


def tile_image(image_path, dst, tile: int = 512, settings: EncodeSettings | None = None, engine=None,
               force: bool = False, progress: bool = True) -> BatchSummary:
    """Cut the image at ``image_path`` into tiles compressed under the folder ``dst`` (see module docstring)."""
    from ..imaging.io import load_image, to_uint8

    check_tile_size(tile)
    settings = settings or EncodeSettings()
    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise ConfigurationError(f"{dst}: exists and is not a folder")
    layout_path = dst / LAYOUT_NAME
    image = load_image(image_path, mode="keep", alpha=settings.alpha or "error")
    pixels = to_uint8(image).numpy()  # (C, H, W): one quarter of the float image, sliced per tile
    del image
    channels, height, width = pixels.shape
    dst.mkdir(parents=True, exist_ok=True)
    tiles = grid(width, height, tile)
    items = [Item(t.file, t.file, partial(_read_tile, pixels, t)) for t in tiles]
    engine = engine or SerialEngine()

    def job(item: Item, block: np.ndarray):
        return (item.path, settings), {"pixels": block}

    def record(result: dict, size: int) -> dict:
        w, h = result["width"], result["height"]
        return {"width": w, "height": h, "bpp": 8 * len(result["output"]) / (w * h), "psnr": result["psnr"],
                "seconds": result["seconds"]}

    summary = run_batch(items, dst, {**settings.as_dict(), "tile": tile}, compress_job, job, record, engine, force,
                        progress, "tile", warm_up=(warm_up, settings))
    if summary.ok:
        entries = [{**t.__dict__, "bytes": (dst / t.file).stat().st_size, "sha256": file_sha256(dst / t.file)}
                   for t in tiles]
        layout = {"format": LAYOUT_FORMAT, "version": LAYOUT_VERSION, "width": width, "height": height,
                  "channels": channels, "tile": tile, "rows": -(-height // tile), "cols": -(-width // tile),
                  "source": Path(image_path).name, "settings": settings.as_dict(), "tiles": entries}
        atomic_write_bytes(layout_path, json.dumps(layout, indent=1).encode(), force=True)
    return summary


def _read_tile(pixels: np.ndarray, t: Tile):
    block = np.ascontiguousarray(pixels[:, t.y : t.y + t.height, t.x : t.x + t.width])
    return b"%d,%d,%d;" % block.shape + block.tobytes(), block


def _int(obj: dict, key: str, lo: int, hi: int) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FormatError(f"{LAYOUT_NAME}: {key!r} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def read_layout(folder) -> MosaicLayout:
    """The validated ``mosaic.json`` of a tiled folder (:class:`FormatError` on anything unexpected)."""
    path = Path(folder) / LAYOUT_NAME
    if not path.is_file():
        raise CollageError(f"{folder}: no {LAYOUT_NAME}; is this a folder written by tile_image?")
    obj = read_document(path, kind="mosaic layout", fmt=LAYOUT_FORMAT, version=LAYOUT_VERSION,
                        max_bytes=MAX_LAYOUT_BYTES)
    width, height = _int(obj, "width", 1, 1 << 20), _int(obj, "height", 1, 1 << 20)
    channels, tile = _int(obj, "channels", 1, 3), _int(obj, "tile", MIN_TILE, MAX_TILE)
    expected = grid(width, height, tile) if -(-width // tile) * -(-height // tile) <= MAX_TILES else None
    entries = obj.get("tiles")
    if expected is None or not isinstance(entries, list) or len(entries) != len(expected):
        raise FormatError(f"{path}: the tile list does not match a {width}x{height} image cut into {tile}-px tiles")
    tiles = []
    for want, entry in zip(expected, entries):
        if not isinstance(entry, dict) or any(entry.get(k) != getattr(want, k) for k in
                                              ("row", "col", "x", "y", "width", "height", "file")):
            raise FormatError(f"{path}: tile entry {entry!r:.120} is not tile {want.file} of the grid")
        size, digest = entry.get("bytes"), entry.get("sha256")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or not isinstance(digest, str) \
                or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise FormatError(f"{path}: tile {want.file} has no valid size and sha256")
        tiles.append(Tile(**{**want.__dict__, "bytes": size, "sha256": digest}))
    settings = obj.get("settings") if isinstance(obj.get("settings"), dict) else None
    return MosaicLayout(width, height, channels, tile, tuple(tiles), str(obj.get("source", ""))[:200], settings)


def _read_checked_tile(folder: Path, t: Tile, channels: int) -> bytes:
    from ..coding.container import unpack

    path = folder / t.file
    if not path.is_file():
        raise CollageError(f"{t.file} is missing")
    if path.stat().st_size != t.bytes:
        raise CollageError(f"{t.file} has {path.stat().st_size} bytes, mosaic.json says {t.bytes} (changed or corrupt)")
    data = path.read_bytes()
    from .manifest import sha256

    if sha256(data) != t.sha256:
        raise CollageError(f"{t.file} does not match its digest in mosaic.json (changed or corrupt)")
    header = unpack(data)[0]
    if (header.width, header.height, header.channels) != (t.width, t.height, channels):
        raise FormatError(f"{t.file} is {header.width}x{header.height}x{header.channels}, "
                          f"the layout says {t.width}x{t.height}x{channels}")
    return data


def mosaic_image(folder, scale: int = 1, engine=None, progress: bool = True, max_pixels: int | None = None,
                 threads: int | None = None) -> np.ndarray:
    """Decode every tile of a tiled folder at ``scale`` and stitch them: ``uint8`` ``(s·H, s·W, C)``.

    Raises :class:`CollageError` naming the first tile that is missing, altered or fails to
    decode; nothing partial is returned.
    """
    folder = Path(folder)
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 16:
        raise ConfigurationError(f"scale must be an integer in [1, 16], got {scale!r}")
    layout = read_layout(folder)
    limit = limits.MAX_PIXELS if max_pixels is None else max_pixels
    pixels = layout.width * layout.height * scale * scale
    if pixels > limit:
        raise ConfigurationError(f"the mosaic at scale {scale} has {pixels:,} pixels, more than the limit of {limit:,}")
    engine = engine or SerialEngine()
    canvas = np.empty((layout.height * scale, layout.width * scale, layout.channels), dtype=np.uint8)
    jobs = ((t, (t.file, _read_checked_tile(folder, t, layout.channels)), {"scale": scale, "threads": threads})
            for t in layout.tiles)
    with tqdm(total=len(layout.tiles), unit="tile", disable=not progress, desc="mosaic") as bar:
        for t, result in engine.run(decode_tile_job, jobs):
            if isinstance(result, BaseException):
                raise CollageError(f"{t.file}: {crash_message(result)}")
            if "error" in result:
                raise CollageError(f"{t.file}: {result['error']}")
            block = result["pixels"]
            if block.shape != (layout.channels, t.height * scale, t.width * scale):
                raise FormatError(f"{t.file} decoded to shape {block.shape}, expected "
                                  f"{(layout.channels, t.height * scale, t.width * scale)}")
            y, x = t.y * scale, t.x * scale
            canvas[y : y + block.shape[1], x : x + block.shape[2]] = block.transpose(1, 2, 0)
            bar.update()
    return canvas
