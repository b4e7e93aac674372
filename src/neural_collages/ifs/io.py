"""Point clouds and IFS files on disk, all read as hostile input.

Clouds (2-D or 3-D points, one per row):

* ``.npy`` — a numeric array ``(M, 2)`` or ``(M, 3)``; the header is read first, so the shape is
  checked before anything is allocated (no pickles, ever);
* ``.xyz`` / ``.txt`` — whitespace- or comma-separated numbers, one point per line, ``#``
  comments; 2 columns are 2-D points, 3 or more are read as x y z (extra columns such as colours
  are ignored);
* ``.ply`` — ASCII or binary PLY (read with ``plyfile``), the ``x``, ``y`` (and ``z``) properties
  of the ``vertex`` element; its vertex count is checked against the limit and the file size
  before ``plyfile`` allocates anything;
* ``.png`` (and the other image suffixes) — the set of the image's *dark* pixels (luma < 0.5),
  one 2-D point per pixel centre, ``y`` pointing up.

``ifs.json`` (written by ``collage ifs fit``, read by ``collage ifs render``)::

    {"format": "neural-collages-ifs", "version": 1, "dim": 2,
     "maps": [{"A": [[a11, a12], [a21, a22]], "t": [t1, t2], "p": 0.85}, ...],
     "fit": {... what fitting measured, informative only ...}}

The maps are in the fitted cloud's own coordinates, so rendering gives points where the cloud
was. On load: at most :data:`MAX_JSON_BYTES`, JSON objects only, 1–64 maps of the declared
dimension, finite numbers, every linear part contractive (largest singular value < 0.999),
probabilities non-negative with a positive sum (missing ones default to ``∝ |det A|``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigurationError, FormatError, ImageError
from ..imaging.atomic import atomic_write_bytes
from ..imaging.io import IMAGE_SUFFIXES, load_image
from ..jsondoc import parse_document
from .fit import MAX_CLOUD_POINTS
from .model import MAX_MAPS, check_maps

#: Largest cloud file read (bytes); MAX_CLOUD_POINTS (fit.py) bounds the points.
MAX_CLOUD_BYTES = 1 << 30
#: Largest ifs.json read.
MAX_JSON_BYTES = 1 << 20
FORMAT_NAME = "neural-collages-ifs"
FORMAT_VERSION = 1
CLOUD_SUFFIXES = (".npy", ".xyz", ".txt", ".ply") + tuple(IMAGE_SUFFIXES)
POINT_SUFFIXES = (".npy", ".ply")


def _check_file(path: Path, limit: int) -> int:
    if not path.exists():
        raise FormatError(f"{path}: no such file")
    if path.is_dir():
        raise FormatError(f"{path} is a directory")
    size = path.stat().st_size
    if size == 0:
        raise FormatError(f"{path}: the file is empty")
    if size > limit:
        raise FormatError(f"{path}: {size:,} bytes is more than the {limit:,} allowed")
    return size


def _points(array: np.ndarray, path: Path) -> torch.Tensor:
    if array.ndim != 2 or array.shape[1] not in (2, 3):
        raise FormatError(f"{path}: a cloud must have shape (M, 2) or (M, 3), got {array.shape}")
    if array.shape[0] > MAX_CLOUD_POINTS:
        raise FormatError(f"{path}: {array.shape[0]:,} points is more than the {MAX_CLOUD_POINTS:,} allowed")
    if array.shape[0] == 0:
        raise FormatError(f"{path}: the cloud has no points")
    out = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    if not bool(torch.isfinite(out).all()):
        raise FormatError(f"{path}: the cloud has NaN or infinite coordinates")
    return out


def read_cloud(path: str | os.PathLike) -> torch.Tensor:
    """The points ``(M, 2|3)`` float64 of a cloud file (see the module docstring for formats)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CLOUD_SUFFIXES:
        raise ConfigurationError(f"{path}: unknown cloud suffix {path.suffix!r}; use one of "
                                 f"{', '.join(sorted(set(CLOUD_SUFFIXES)))}")
    if suffix in IMAGE_SUFFIXES:
        return _read_image_cloud(path)
    size = _check_file(path, MAX_CLOUD_BYTES)
    if suffix == ".npy":
        return _read_npy(path)
    if suffix == ".ply":
        return _read_ply(path, size)
    return _read_text(path)


def _read_npy(path: Path) -> torch.Tensor:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FormatError(f"{path}: not a readable .npy array ({exc})") from None
    if array.dtype.kind not in "fiu" or array.dtype.itemsize > 8:
        raise FormatError(f"{path}: a cloud must hold numbers, got dtype {array.dtype}")
    return _points(np.asarray(array), path)


def _read_text(path: Path) -> torch.Tensor:
    rows = []
    width = None
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            line = line.split("#", 1)[0].replace(",", " ").split()
            if not line:
                continue
            if len(rows) >= MAX_CLOUD_POINTS:
                raise FormatError(f"{path}: more than the {MAX_CLOUD_POINTS:,} points allowed")
            if width is None:
                if len(line) < 2:
                    raise FormatError(f"{path}:{number}: a point needs 2 or 3 coordinates, got {len(line)}")
                width = 2 if len(line) == 2 else 3
            if len(line) < width or (width == 2 and len(line) != 2):
                raise FormatError(f"{path}:{number}: expected {width} coordinates like the first point, got {len(line)}")
            try:
                rows.append([float(v) for v in line[:width]])
            except ValueError:
                raise FormatError(f"{path}:{number}: not a number in {' '.join(line[:width])!r}") from None
    if not rows:
        raise FormatError(f"{path}: the cloud has no points")
    return _points(np.asarray(rows, dtype=np.float64), path)


def _ply_vertex_count(path: Path) -> tuple[int, bool]:
    """The declared vertex count and whether the file is ASCII, from the header alone."""
    count, ascii_ = None, False
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise FormatError(f"{path}: not a PLY file")
        for _ in range(1000):
            line = f.readline()
            if not line:
                break
            words = line.split()
            if words[:1] == [b"format"] and len(words) >= 2:
                ascii_ = words[1] == b"ascii"
            if words[:2] == [b"element", b"vertex"] and len(words) == 3:
                try:
                    count = int(words[2])
                except ValueError:
                    raise FormatError(f"{path}: bad vertex count {words[2]!r}") from None
            if words[:1] == [b"end_header"]:
                if count is None:
                    raise FormatError(f"{path}: the PLY file has no vertex element")
                return count, ascii_
    raise FormatError(f"{path}: the PLY header does not end")


def _read_ply(path: Path, size: int) -> torch.Tensor:
    from plyfile import PlyData, PlyParseError

    count, ascii_ = _ply_vertex_count(path)
    if not 0 < count <= MAX_CLOUD_POINTS:
        raise FormatError(f"{path}: {count:,} vertices; a cloud must have 1..{MAX_CLOUD_POINTS:,}")
    # A binary vertex takes at least 2 bytes, an ASCII one at least 4 ("0 0\n"): refuse counts the
    # file cannot hold before plyfile allocates room for them.
    if count * (4 if ascii_ else 2) > size:
        raise FormatError(f"{path}: the header declares {count:,} vertices, more than the file can hold")
    try:
        data = PlyData.read(str(path))
        vertex = data["vertex"]
        names = [p.name for p in vertex.properties]
        if "x" not in names or "y" not in names:
            raise FormatError(f"{path}: the vertices have no x and y properties")
        columns = ["x", "y"] + (["z"] if "z" in names else [])
        array = np.stack([np.asarray(vertex[c], dtype=np.float64) for c in columns], 1)
    except FormatError:
        raise
    except (PlyParseError, ValueError, KeyError, IndexError, TypeError, EOFError, OSError) as exc:
        raise FormatError(f"{path}: not a readable PLY file ({type(exc).__name__}: {exc})") from None
    return _points(array, path)


def _read_image_cloud(path: Path) -> torch.Tensor:
    grey = load_image(path, mode="grey", alpha="composite", background=1.0)[0]
    rows, cols = torch.nonzero(grey < 0.5, as_tuple=True)
    if rows.numel() == 0:
        raise ImageError(f"{path}: the image has no dark pixels (luma < 0.5) to read as points")
    H = grey.shape[0]
    return torch.stack([cols.double() + 0.5, (H - rows).double() - 0.5], 1)


def write_points(points: torch.Tensor, path: str | os.PathLike, force: bool = False) -> None:
    """Write points ``(M, 2|3)`` as ``.npy`` (float32) or binary ``.ply``, atomically."""
    import io

    path = Path(path)
    suffix = path.suffix.lower()
    array = np.ascontiguousarray(torch.as_tensor(points).detach().cpu().numpy(), dtype=np.float32)
    if array.ndim != 2 or array.shape[1] not in (2, 3):
        raise ConfigurationError(f"points must have shape (M, 2) or (M, 3), got {array.shape}")
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, array, allow_pickle=False)
    elif suffix == ".ply":
        from plyfile import PlyData, PlyElement

        names = ["x", "y", "z"][: array.shape[1]]
        vertex = np.empty(len(array), dtype=[(n, "f4") for n in names])
        for k, n in enumerate(names):
            vertex[n] = array[:, k]
        PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<").write(buffer)
    else:
        raise ConfigurationError(f"{path}: points are written as .npy or .ply, not {path.suffix!r}")
    atomic_write_bytes(path, buffer.getvalue(), force=force)


# --------------------------------------------------------------------------- ifs.json


def ifs_to_json(A, t, p, fit: dict | None = None) -> str:
    """The ``ifs.json`` text of maps ``(A (N, d, d), t (N, d), p (N,))`` (validated first)."""
    A, t, p = check_maps(A, t, p)
    maps = [{"A": A[i].tolist(), "t": t[i].tolist(), "p": float(p[i])} for i in range(A.shape[0])]
    doc = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "dim": int(A.shape[1]), "maps": maps}
    if fit:
        doc["fit"] = fit
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def write_ifs(path: str | os.PathLike, A, t, p, fit: dict | None = None, force: bool = False) -> None:
    atomic_write_bytes(Path(path), ifs_to_json(A, t, p, fit).encode(), force=force)


def parse_ifs(text: str | bytes, source: str = "ifs.json") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(A, t, p)`` float64 from ``ifs.json`` text; :class:`FormatError` for anything malformed."""
    doc = parse_document(text, source, kind="IFS file", fmt=FORMAT_NAME, version=FORMAT_VERSION,
                         max_bytes=MAX_JSON_BYTES)
    dim, maps = doc.get("dim"), doc.get("maps")
    if dim not in (2, 3) or isinstance(dim, bool):
        raise FormatError(f"{source}: \"dim\" must be 2 or 3, got {dim!r}")
    if not isinstance(maps, list) or not 1 <= len(maps) <= MAX_MAPS:
        raise FormatError(f"{source}: \"maps\" must be a list of 1..{MAX_MAPS} maps")
    A, t, p = [], [], []
    for i, m in enumerate(maps):
        if not isinstance(m, dict):
            raise FormatError(f"{source}: map {i} is not an object")
        a = _matrix(m.get("A"), dim, f"{source}: map {i} \"A\"")
        v = _vector(m.get("t"), dim, f"{source}: map {i} \"t\"")
        A.append(a)
        t.append(v)
        p.append(m.get("p"))
    if all(x is None for x in p):
        probabilities = None
    elif any(not _is_number(x) for x in p):
        raise FormatError(f"{source}: every map needs a number \"p\", or none may have one")
    else:
        probabilities = p
    try:
        return check_maps(A, t, probabilities)
    except ConfigurationError as exc:
        raise FormatError(f"{source}: {exc}") from None


def read_ifs(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    path = Path(path)
    _check_file(path, MAX_JSON_BYTES)
    return parse_ifs(path.read_bytes(), str(path))


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _vector(v, dim: int, what: str) -> list[float]:
    if not isinstance(v, list) or len(v) != dim or not all(_is_number(x) for x in v):
        raise FormatError(f"{what} must be a list of {dim} finite numbers")
    return [float(x) for x in v]


def _matrix(a, dim: int, what: str) -> list[list[float]]:
    if not isinstance(a, list) or len(a) != dim:
        raise FormatError(f"{what} must be a {dim}x{dim} list of lists")
    return [_vector(row, dim, what) for row in a]
