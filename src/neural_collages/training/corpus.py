"""Training corpora for the Neural Collage codec, built only from Debian and PyPI packages.

Where the images come from is described in ``docs/training.md``: natural photos (wallpapers, puzzle photos,
the images bundled with scikit-image and scikit-learn) and NEON aerial orthophotos shipped with
deepforest. Nothing is downloaded; sources that are not installed are skipped. The Kodak test set
is never part of a training corpus.

A corpus is a directory of PNG files plus ``manifest.json`` (built by :func:`build_corpus`, read by
:func:`load_corpus`); :class:`~neural_collages.training.sampler.CropSampler` draws training crops from it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..errors import ConfigurationError, ImageError, OutputExistsError
from ..imaging.atomic import atomic_write_bytes
from ..imaging.io import load_image, to_uint8
from ..jsondoc import read_document

__all__ = [
    "KINDS",
    "DEFAULT_MAX_SIDE",
    "CorpusError",
    "photo_sources",
    "aerial_sources",
    "build_corpus",
    "load_corpus",
]

#: Corpus kinds accepted by :func:`build_corpus`.
KINDS = ("photo", "aerial-train", "aerial-test")

#: Longer-side limit per kind when ``max_side="default"``: photos are reduced to about Kodak's
#: scale (768x512), which also averages away JPEG artefacts; aerial images keep their native
#: 10 cm ground resolution.
DEFAULT_MAX_SIDE: dict[str, int | None] = {"photo": 1024, "aerial-train": None, "aerial-test": None}

MANIFEST = "manifest.json"
_FORMAT = "neural-collages-corpus"
_VERSION = 1
#: A corpus manifest lists a few thousand images at most; a larger one is not ours.
MAX_MANIFEST_BYTES = 1 << 26
_HINT = "build it first with `collage corpus {kind} DIR`"


class CorpusError(ImageError):
    """A corpus that cannot be built or read: no sources, missing or corrupt manifest or images."""


# --------------------------------------------------------------------------- sources

_PLASMA_PHOTOS = (
    "BytheWater", "ColdRipple", "ColorfulCups", "EveningGlow", "FallenLeaf",
    "Grey", "Kite", "OneStandsOut", "Path", "summer_1am",
)  # fmt: skip
# The other lxqt-themes wallpapers are logos and abstract artwork.
_LXQT_PHOTOS = (
    "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png", "beam.png",
    "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg", "this-is-not-windows.jpg",
)  # fmt: skip
_PALAPELI_PHOTOS = (
    "castle-maintenon", "cincinnati-bridge", "citrus-fruits", "european-honey-bee", "panther-chameleon-female",
)  # fmt: skip
_OPENCV_PHOTOS = (
    "aloeL", "apple", "baboon", "building", "butterfly", "fruits",
    "home", "leuvenA", "messi5", "orange", "squirrel_cls",
)  # fmt: skip
# astronaut.png is left out on purpose: a downsized copy ships as the package's demo/test image,
# and training on it would flatter the demo.
_SKIMAGE_PHOTOS = (
    "camera.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
)  # fmt: skip
_SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")

_AERIAL_TEST = ("2019_YELL_2_541000_4977000_image_crop.png",)  # a whole held-out image, never a crop
_AERIAL_TRAIN = ("2019_YELL_2_528000_4978000_image_crop2.png", "OSBS_029.png", "SOAP_031.png", "SOAP_061.png")

_PLASMA_DIR = Path("/usr/share/wallpapers")
_LXQT_DIR = Path("/usr/share/lxqt/wallpapers")
_PALAPELI_DIR = Path("/usr/share/palapeli/collection")
_LOMIRI_DIR = Path("/usr/share/backgrounds")
_OPENCV_DIR = Path("/usr/share/doc/opencv-doc/examples/data")


def _pypi_dir(module: str, *parts: str) -> Path | None:
    """A data directory inside an installed PyPI package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0], *parts) if locations else None


def _roots() -> list[tuple[Path, str, str]]:
    """(directory, package, registry) for every place a source may live, for the manifest."""
    roots = [
        (_PLASMA_DIR, "plasma-workspace-wallpapers", "debian"),
        (_LXQT_DIR, "lxqt-themes", "debian"),
        (_PALAPELI_DIR, "palapeli-data", "debian"),
        (_LOMIRI_DIR, "lomiri-wallpapers-20.04", "debian"),
        (_OPENCV_DIR, "opencv-doc", "debian"),
    ]
    for module, package, parts in (
        ("skimage", "scikit-image", ("data",)),
        ("sklearn", "scikit-learn", ("datasets", "images")),
        ("deepforest", "deepforest", ("data",)),
    ):
        directory = _pypi_dir(module, *parts)
        if directory is not None:
            roots.append((directory, package, "pypi"))
    return roots


def _existing(paths: Sequence[Path]) -> list[Path]:
    return sorted(p for p in paths if p.is_file())


def photo_sources() -> list[Path]:
    """Every training photo listed in ``docs/training.md`` that is installed here, sorted; never Kodak."""
    paths = [_PLASMA_DIR / name / "contents" / "images" / "2560x1600.jpg" for name in _PLASMA_PHOTOS]
    paths += [_LXQT_DIR / name for name in _LXQT_PHOTOS]
    paths += [_PALAPELI_DIR / f"{name}.jpg" for name in _PALAPELI_PHOTOS]
    paths.append(_LOMIRI_DIR / "Kleiber_by_Lukas_Baubkus.jpg")
    paths += [_OPENCV_DIR / f"{name}{ext}" for name in _OPENCV_PHOTOS for ext in (".jpg", ".png")]
    skimage = _pypi_dir("skimage", "data")
    if skimage is not None:
        paths += [skimage / name for name in _SKIMAGE_PHOTOS]
    sklearn = _pypi_dir("sklearn", "datasets", "images")
    if sklearn is not None:
        paths += [sklearn / name for name in _SKLEARN_PHOTOS]
    return _existing(paths)


def aerial_sources(split: str) -> list[Path]:
    """deepforest's NEON 10 cm RGB orthophotos for ``split`` ``"train"`` or ``"test"`` (whole images).

    The drone photo deepforest also ships is left out: it is an oblique view, not an orthophoto.
    """
    names = {"train": _AERIAL_TRAIN, "test": _AERIAL_TEST}.get(split)
    if names is None:
        raise ConfigurationError(f"aerial split must be 'train' or 'test', got {split!r}")
    directory = _pypi_dir("deepforest", "data")
    return [] if directory is None else _existing([directory / name for name in names])


def _sources(kind: str) -> list[Path]:
    if kind == "photo":
        return photo_sources()
    if kind in ("aerial-train", "aerial-test"):
        return aerial_sources(kind.removeprefix("aerial-"))
    raise ConfigurationError(f"corpus kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")


def _is_kodak(path: Path) -> bool:
    # Kodak is the evaluation set: refuse it even if a caller passes it in by hand.
    return re.fullmatch(r"kodim\d+", path.stem.lower()) is not None or any(
        "kodak" in part.lower() for part in path.parts
    )


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class _Origin:
    package: str | None
    registry: str | None
    version: str | None


def _package_version(package: str, registry: str) -> str | None:
    try:
        if registry == "pypi":
            return importlib.metadata.version(package)
        if shutil.which("dpkg-query"):
            out = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=10
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
    except (importlib.metadata.PackageNotFoundError, OSError, subprocess.SubprocessError):
        pass
    return None


def _origins(paths: Sequence[Path]) -> dict[Path, _Origin]:
    roots = _roots()
    versions: dict[str, str | None] = {}
    origins = {}
    for path in paths:
        origin = _Origin(None, None, None)
        for root, package, registry in roots:
            if path.is_relative_to(root):
                if package not in versions:
                    versions[package] = _package_version(package, registry)
                origin = _Origin(package, registry, versions[package])
                break
        origins[path] = origin
    return origins


def _label(path: Path) -> str:
    stem = path.stem
    # Plasma wallpapers are all called <W>x<H>.jpg inside <Name>/contents/images/.
    if re.fullmatch(r"\d+x\d+", stem) and len(path.parents) > 3:
        stem = path.parents[2].name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _prepare(path: Path, max_side: int | None) -> tuple[Image.Image, tuple[int, int]]:
    """``path`` as an 8-bit RGB image, longer side at most ``max_side``, and its size as decoded."""
    # load_image checks the pixel count before decoding, applies EXIF orientation, replicates
    # greyscale to RGB and raises ImageError for transparency; 8-bit values survive to_uint8 exactly.
    rgb = to_uint8(load_image(path, mode="rgb", alpha="error"))
    im = Image.fromarray(np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()))  # (H, W, 3) uint8: RGB
    source_size = im.size
    if max_side is not None and max(im.size) > max_side:
        scale = max_side / max(im.size)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        # reducing_gap: an exact box reduce (Image.reduce) down to ~3x the target, then Lanczos;
        # per Pillow's docs practically indistinguishable from plain Lanczos, and much faster on
        # 20-megapixel photos.
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return im, source_size


def _check_max_side(kind: str, max_side: int | None | str) -> int | None:
    if max_side == "default":
        return DEFAULT_MAX_SIDE[kind]
    if max_side is None:
        return None
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ConfigurationError(f"max_side must be a positive integer, None or 'default', got {max_side!r}")
    return max_side


def _prepare_out_dir(out_dir: Path, force: bool) -> dict[str, Any] | None:
    """Create ``out_dir`` or, with ``force``, invalidate the corpus in it; returns its old manifest."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CorpusError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise OutputExistsError(
                f"{out_dir} exists and is not empty; refusing to overwrite it (pass force=True to rebuild it)", out_dir
            )
        old = None
        manifest = out_dir / MANIFEST
        try:
            old = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        # Drop the manifest first: a build interrupted from here on leaves a directory that
        # load_corpus rejects, instead of a manifest whose hashes no longer match the PNGs.
        manifest.unlink(missing_ok=True)
        return old if isinstance(old, dict) else None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CorpusError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    return None


def _build(
    kind: str,
    sources: Sequence[Path],
    out_dir: Path,
    max_side: int | None,
    force: bool,
    progress: bool,
) -> dict[str, Any]:
    """Write ``sources`` as a corpus into ``out_dir``; the work behind :func:`build_corpus`."""
    sources = [Path(p) for p in sources]
    kodak = [str(p) for p in sources if _is_kodak(p)]
    if kodak:
        raise ConfigurationError(f"Kodak images are the test set and must never be trained on: {kodak}")
    if not sources:
        raise CorpusError(
            f"no {kind} source images are installed on this machine; install the Debian/PyPI packages "
            "listed in docs/training.md (e.g. plasma-workspace-wallpapers, scikit-image, deepforest)"
        )
    old = _prepare_out_dir(out_dir, force)
    origins = _origins(sources)
    entries: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for path in tqdm(sources, desc=f"corpus {kind}", unit="img", disable=not progress, file=sys.stderr):
        try:
            im, source_size = _prepare(path, max_side)
        except (ImageError, OSError) as exc:
            # A source that is installed but unreadable (or has transparency) is reported, not fatal.
            skipped.append({"source": str(path), "reason": str(exc)})
            continue
        buffer = _encode_png(im)
        name = f"{len(entries):03d}-{_label(path)}.png"
        atomic_write_bytes(out_dir / name, buffer, force=force)
        origin = origins[path]
        entries.append(
            {
                "file": name,
                "source": str(path),
                "package": origin.package,
                "registry": origin.registry,
                "package_version": origin.version,
                "source_width": source_size[0],
                "source_height": source_size[1],
                "width": im.width,
                "height": im.height,
                "sha256": _sha256(buffer),
            }
        )
    if not entries:
        raise CorpusError(f"none of the {len(sources)} {kind} sources could be read: {skipped}")
    manifest: dict[str, Any] = {
        "format": _FORMAT,
        "version": _VERSION,
        "kind": kind,
        "max_side": max_side,
        "num_images": len(entries),
        "megapixels": round(sum(e["width"] * e["height"] for e in entries) / 1e6, 3),
        "images": entries,
        "skipped": skipped,
    }
    _remove_stale(out_dir, old, {e["file"] for e in entries})
    data = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    atomic_write_bytes(out_dir / MANIFEST, data, force=force)
    return manifest


def _encode_png(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    return buffer.getvalue()


def _remove_stale(out_dir: Path, old: dict[str, Any] | None, keep: set[str]) -> None:
    # Only files a previous build listed are removed: never anything else the user keeps there.
    images = old.get("images") if old else None
    if not isinstance(images, list):
        return
    for entry in images:
        name = entry.get("file") if isinstance(entry, dict) else None
        if isinstance(name, str) and _plain_name(name) and name not in keep:
            (out_dir / name).unlink(missing_ok=True)


def _plain_name(name: str) -> bool:
    return name not in ("", ".", "..") and Path(name).name == name and "\\" not in name


def build_corpus(
    kind: str,
    out_dir: str | os.PathLike,
    max_side: int | None | Literal["default"] = "default",
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the ``kind`` corpus (see :data:`KINDS`) into ``out_dir`` and return its manifest.

    Each installed source is decoded as 8-bit RGB (greyscale sources are converted to RGB by
    replicating the grey channel; sources with transparency or that fail to decode are skipped
    and listed under ``"skipped"``), shrunk with Lanczos so its longer side is at most
    ``max_side`` (``None`` keeps the native size; ``"default"`` is :data:`DEFAULT_MAX_SIDE`:
    1024 for photos, native for aerial images), and written as PNG with ``manifest.json``
    (source, package, sizes, sha256 of each written file). Files are written atomically. An
    existing non-empty ``out_dir`` is only rebuilt with ``force`` (else :class:`OutputExistsError`).
    """
    sources = _sources(kind)
    return _build(kind, sources, Path(out_dir), _check_max_side(kind, max_side), force, progress)


# --------------------------------------------------------------------------- loading


def load_corpus(path: str | os.PathLike) -> list[torch.Tensor]:
    """Read a corpus directory built by :func:`build_corpus` as ``uint8`` tensors ``(3, H, W)``.

    Every image is checked against the manifest (sha256 and size); a missing directory or
    manifest, a corrupt manifest, or a missing or modified image raise :class:`CorpusError`.
    """
    root = Path(path)
    hint = _HINT.format(kind="{photo,aerial-train,aerial-test}")
    if not root.is_dir():
        raise CorpusError(f"{root}: no corpus directory; {hint}")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise CorpusError(f"{root}: no {MANIFEST} (missing or unfinished corpus); {hint}")
    manifest = read_document(manifest_path, kind="manifest", fmt=_FORMAT, version=_VERSION,
                             max_bytes=MAX_MANIFEST_BYTES, error=CorpusError, hint=hint)
    entries = manifest.get("images")
    if not isinstance(entries, list) or not entries:
        raise CorpusError(f"{manifest_path}: manifest lists no images; {hint}")

    images = []
    for entry in entries:
        try:
            name, digest = entry["file"], entry["sha256"]
            width, height = int(entry["width"]), int(entry["height"])
        except (TypeError, KeyError, ValueError):
            raise CorpusError(f"{manifest_path}: malformed image entry {entry!r}; {hint}") from None
        if not isinstance(name, str) or not _plain_name(name):
            # A crafted manifest must not make us read files outside the corpus directory.
            raise CorpusError(f"{manifest_path}: image entry {name!r} is not a plain file name")
        file = root / name
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise CorpusError(f"{file}: cannot read corpus image ({exc.strerror or exc}); {hint}") from exc
        if _sha256(data) != digest:
            raise CorpusError(f"{file}: contents do not match the manifest (modified or corrupt); {hint}")
        image = to_uint8(load_image(file, mode="rgb", alpha="error"))
        if tuple(image.shape) != (3, height, width):
            raise CorpusError(f"{file}: is {tuple(image.shape)}, manifest says (3, {height}, {width})")
        images.append(image)
    return images
