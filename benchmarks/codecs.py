"""Codec registry of the rate–distortion benchmark (``benchmarks/rd.py``).

A codec is anything with the :class:`ImageCodec` interface::

    name: str                     # registry key and curve label, e.g. "jpeg"
    description: str              # one line: library, settings, what the quality means
    qualities: Sequence           # the sweep, one rate-distortion point per entry
    encode(image, quality) -> bytes   # image: numpy uint8 array H x W x 3 (RGB)
    decode(data) -> numpy uint8 array H x W x 3

The rate is ``8 * len(encode(...))`` bits, so everything a decoder needs (size, settings) must be
in the bytes. Register a codec with :func:`register_codec` (a factory: a class or any callable
returning a codec, built only when first used) and look it up with :func:`get_codec`.

Built in: Pillow's JPEG, WebP and AVIF encoders. The project's own codecs plug in through
``benchmarks.ours.benchmark_codecs()`` (:data:`PROJECT_MODULE`), called the first time the
registry is queried (see :func:`load_project_codecs`); a missing module or function is ignored.
"""

from __future__ import annotations

import abc
import importlib
import io
import warnings
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image, features

#: The module whose ``benchmark_codecs()`` lists this project's codecs (adapters kept out of the library).
PROJECT_MODULE = "benchmarks.ours"

__all__ = [
    "ImageCodec",
    "PillowCodec",
    "JpegCodec",
    "WebpCodec",
    "AvifCodec",
    "UnknownCodecError",
    "register_codec",
    "unregister_codec",
    "get_codec",
    "available_codecs",
    "load_project_codecs",
    "check_image",
]


class UnknownCodecError(KeyError):
    """No codec of that name is registered (the message lists the registered names)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class ImageCodec(abc.ABC):
    """Base class of benchmark codecs (subclassing is optional: the registry only needs the
    attributes and methods below)."""

    name: str = ""
    description: str = ""
    qualities: Sequence = ()

    @abc.abstractmethod
    def encode(self, image: np.ndarray, quality) -> bytes:
        """Compress an RGB image (``uint8`` array ``H x W x 3``) at one point of the sweep."""

    @abc.abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """Reconstruct the image (``uint8`` array ``H x W x 3``) from the bytes of :meth:`encode`."""

    def versions(self) -> dict[str, str]:
        """Library versions worth recording with the results (name -> version)."""
        return {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.description}>"


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Check that ``image`` is a ``uint8`` array ``H x W x 3`` and return it C-contiguous."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{what} must be a uint8 array of shape (H, W, 3), got {dtype} {shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


# --------------------------------------------------------------------------- Pillow baselines


class PillowCodec(ImageCodec):
    """A Pillow image format: ``encode`` saves to memory with ``save_params`` plus the quality."""

    format: str = ""

    def save_params(self, quality) -> dict[str, Any]:
        return {"quality": int(quality)}

    def encode(self, image: np.ndarray, quality) -> bytes:
        image = check_image(image)
        buffer = io.BytesIO()
        Image.fromarray(image, mode="RGB").save(buffer, format=self.format, **self.save_params(quality))
        return buffer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != self.format:
                raise ValueError(f"{self.name}: expected a {self.format} stream, got {im.format}")
            im.load()
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8).copy()


class JpegCodec(PillowCodec):
    name = "jpeg"
    format = "JPEG"
    qualities = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90)

    def __init__(self, optimize: bool = True) -> None:
        # optimize=False (Pillow's default, standard Huffman tables) is what most published
        # "Pillow JPEG" curves used: about 35 % more bits at quality 5, 12 % at quality 20.
        self.optimize = bool(optimize)
        turbo = features.version("libjpeg_turbo")
        lib = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version('jpg')}"
        tables = "optimize=True (optimised Huffman tables)" if self.optimize else "standard Huffman tables"
        self.description = (
            f"JPEG via Pillow ({lib}): baseline, {tables}, "
            "4:2:0 chroma subsampling, standard quant tables scaled by quality (1-100)"
        )

    def save_params(self, quality) -> dict[str, Any]:
        return {"quality": int(quality), "optimize": self.optimize, "subsampling": "4:2:0"}

    def versions(self) -> dict[str, str]:
        return {"pillow": Image.__version__, "libjpeg": str(features.version("jpg")),
                "libjpeg_turbo": str(features.version("libjpeg_turbo"))}


class WebpCodec(PillowCodec):
    name = "webp"
    format = "WEBP"
    qualities = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90)

    def __init__(self) -> None:
        self.description = (
            f"WebP (lossy, VP8 intra) via Pillow (libwebp {features.version('webp')}): method=6 (slowest, "
            "best), 4:2:0, quality 0-100"
        )

    def save_params(self, quality) -> dict[str, Any]:
        return {"quality": int(quality), "method": 6, "lossless": False}

    def versions(self) -> dict[str, str]:
        return {"pillow": Image.__version__, "libwebp": str(features.version("webp"))}


class AvifCodec(PillowCodec):
    """AVIF (AV1 intra) through Pillow's libavif binding.

    ``speed`` 0 (slowest, best) to 10; the default 6 is libavif's own default. On a Kodak image
    it encodes in about 0.3 s on one core; speed 4 gains about 0.1-0.3 dB at the same rate for
    4-6x the encode time, speed 8 loses about as much for a 3x speed-up. ``threads`` bounds the
    encoder's and decoder's worker threads (1: timings comparable with the single-threaded JPEG
    and WebP encoders).
    """

    name = "avif"
    format = "AVIF"
    qualities = (5, 10, 20, 30, 40, 50, 60, 70, 80)

    def __init__(self, speed: int = 6, threads: int = 1, subsampling: str = "4:2:0") -> None:
        if not features.check("avif"):
            raise RuntimeError("this Pillow build has no AVIF support")
        self.speed, self.threads, self.subsampling = int(speed), int(threads), subsampling
        from PIL import AvifImagePlugin

        encoder = AvifImagePlugin.get_codec_version("aom")
        lib = f"libavif {features.version('avif')}" + (f", libaom {encoder}" if encoder else "")
        self.description = (
            f"AVIF (AV1 intra) via Pillow ({lib}): speed={self.speed} (libavif default; 0 slowest .. 10 fastest), "
            f"{self.threads} thread(s), {self.subsampling}, full range, quality 0-100"
        )

    def save_params(self, quality) -> dict[str, Any]:
        return {"quality": int(quality), "speed": self.speed, "max_threads": self.threads,
                "subsampling": self.subsampling, "range": "full"}

    def decode(self, data: bytes) -> np.ndarray:
        # Pillow's AVIF decoder takes its thread count from a module default read when a file is
        # opened; bound it for this call only.
        from PIL import AvifImagePlugin

        saved = AvifImagePlugin.DEFAULT_MAX_THREADS
        AvifImagePlugin.DEFAULT_MAX_THREADS = self.threads
        try:
            return super().decode(data)
        finally:
            AvifImagePlugin.DEFAULT_MAX_THREADS = saved

    def versions(self) -> dict[str, str]:
        from PIL import AvifImagePlugin

        return {"pillow": Image.__version__, "libavif": str(features.version("avif")),
                "libaom": str(AvifImagePlugin.get_codec_version("aom"))}


# --------------------------------------------------------------------------- adapter for project codecs


class TensorCodecAdapter(ImageCodec):
    """Wraps a codec with the project's tensor API: ``compress(image_float_CHW, codec=name,
    quality=q) -> bytes`` and ``decompress(data) -> float CHW in [0, 1]`` (the interface of
    ``neural_collages.codecs``)."""

    def __init__(self, name: str, qualities: Sequence, compress: Callable, decompress: Callable,
                 description: str = "") -> None:
        self.name = name
        self.qualities = tuple(qualities)
        self.description = description or f"neural_collages codec {name!r}"
        self._compress, self._decompress = compress, decompress

    def encode(self, image: np.ndarray, quality) -> bytes:
        import torch

        image = check_image(image)
        x = torch.from_numpy(image).permute(2, 0, 1).to(torch.float32) / 255.0
        return bytes(self._compress(x.contiguous(), codec=self.name, quality=quality))

    def decode(self, data: bytes) -> np.ndarray:
        from neural_collages.imaging.io import to_uint8

        y = self._decompress(data)
        if y.ndim != 3 or y.shape[0] not in (1, 3):
            raise ValueError(f"{self.name}: decoder returned shape {tuple(y.shape)}, expected (3, H, W)")
        y = to_uint8(y)
        if y.shape[0] == 1:
            y = y.expand(3, -1, -1)
        return y.permute(1, 2, 0).contiguous().numpy()

    def versions(self) -> dict[str, str]:
        try:
            import neural_collages

            return {"neural_collages": str(getattr(neural_collages, "__version__", "?"))}
        except ImportError:  # pragma: no cover
            return {}


# --------------------------------------------------------------------------- registry

_FACTORIES: dict[str, Callable[[], Any]] = {}
_INSTANCES: dict[str, Any] = {}
_PROJECT_LOADED = False
_PROJECT_NAMES: set[str] = set()  # names registered by load_project_codecs (replaced on a forced reload)
_REQUIRED = ("name", "description", "qualities", "encode", "decode")


def _validate(codec, where: str):
    missing = [a for a in _REQUIRED if not hasattr(codec, a)]
    if missing:
        raise TypeError(f"{where}: not a codec, missing {', '.join(missing)}")
    if not callable(codec.encode) or not callable(codec.decode):
        raise TypeError(f"{where}: encode and decode must be methods")
    if not isinstance(codec.name, str) or not codec.name:
        raise TypeError(f"{where}: codec name must be a non-empty string, got {codec.name!r}")
    if len(tuple(codec.qualities)) == 0:
        raise TypeError(f"{where}: codec {codec.name!r} has an empty quality sweep")
    return codec


def register_codec(factory, name: str | None = None, replace: bool = False) -> str:
    """Register a codec under ``name`` and return the name.

    ``factory`` is a codec class, a callable returning a codec (built on first use, so a slow
    import or a missing library costs nothing until the codec is asked for), or a codec
    instance. ``name`` defaults to the factory's ``name`` attribute (classes and instances),
    else the factory is called once to read it. Registering a taken name raises ``ValueError``
    unless ``replace=True``.
    """
    if name is None:
        name = getattr(factory, "name", None)
        if not isinstance(name, str) or not name:
            instance = _validate(factory(), f"codec factory {factory!r}")
            name = instance.name
            factory = _constant(instance)
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ValueError(f"codec name must be a non-empty string without spaces, got {name!r}")
    if name in _FACTORIES and not replace:
        raise ValueError(f"a codec named {name!r} is already registered (pass replace=True to replace it)")
    if not callable(factory) or all(hasattr(factory, a) for a in _REQUIRED) and not isinstance(factory, type):
        factory = _constant(_validate(factory, f"codec {name!r}"))
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)
    return name


def _constant(instance):
    def factory():
        return instance

    factory.name = instance.name  # type: ignore[attr-defined]
    return factory


def unregister_codec(name: str) -> None:
    """Remove a codec from the registry (no error if it is not there)."""
    _FACTORIES.pop(name, None)
    _INSTANCES.pop(name, None)
    _PROJECT_NAMES.discard(name)


def available_codecs() -> list[str]:
    """Names of the registered codecs (built-ins first, then in registration order)."""
    load_project_codecs()
    return list(_FACTORIES)


def get_codec(name: str):
    """The codec registered as ``name`` (built once, then cached).

    Raises :class:`UnknownCodecError` (a ``KeyError``) naming the registered codecs.
    """
    load_project_codecs()
    if name not in _FACTORIES:
        known = ", ".join(_FACTORIES) or "(none)"
        raise UnknownCodecError(f"unknown codec {name!r}; available codecs: {known}")
    if name not in _INSTANCES:
        codec = _validate(_FACTORIES[name](), f"codec {name!r}")
        if codec.name != name:
            raise TypeError(f"codec registered as {name!r} calls itself {codec.name!r}")
        _INSTANCES[name] = codec
    return _INSTANCES[name]


def load_project_codecs(force: bool = False) -> list[str]:
    """Register the codecs that ``benchmarks.ours.benchmark_codecs()`` lists; returns the
    names it added. Runs once (again with ``force=True``). A missing module or function is
    ignored silently; any other failure is a warning, never fatal for the built-in codecs.

    ``benchmark_codecs()`` returns an iterable whose items are each one of:

    * a codec (an :class:`ImageCodec`-like object) or a factory of one (class / callable);
    * a ``(name, qualities)`` pair for a codec reached through the module's tensor API
      ``compress(image, codec=name, quality=q)`` / ``decompress(data)``, wrapped in a
      :class:`TensorCodecAdapter`; a ``(name, qualities, description)`` triple also works.

    A name already taken by another codec (e.g. a built-in) keeps that codec, with a warning;
    a forced reload replaces the codecs an earlier call registered.
    """
    global _PROJECT_LOADED
    if _PROJECT_LOADED and not force:
        return []
    _PROJECT_LOADED = True
    try:
        module = importlib.import_module(PROJECT_MODULE)
        entries = module.benchmark_codecs()
    except (ImportError, AttributeError):
        return []
    except Exception as exc:  # a bug there must not take the baselines down with it
        warnings.warn(f"{PROJECT_MODULE}.benchmark_codecs() failed: {type(exc).__name__}: {exc}",
                      RuntimeWarning, stacklevel=2)
        return []
    added = []
    for entry in _iterate(entries):
        try:
            factory, name = _project_factory(module, entry)
            if name in _FACTORIES and name not in _PROJECT_NAMES:
                warnings.warn(f"project codec {name!r} not registered: the name is taken by a built-in codec",
                              RuntimeWarning, stacklevel=2)
                continue
            added.append(register_codec(factory, name=name, replace=True))
            _PROJECT_NAMES.add(name)
        except Exception as exc:
            warnings.warn(f"cannot register project codec {entry!r}: {type(exc).__name__}: {exc}",
                          RuntimeWarning, stacklevel=2)
    return added


def _iterate(entries) -> Iterable:
    if isinstance(entries, dict):
        return list(entries.items())
    try:
        return list(entries)
    except TypeError:
        return [entries]


def _project_factory(module, entry):
    if isinstance(entry, tuple) and entry and isinstance(entry[0], str):
        if len(entry) == 2 and (hasattr(entry[1], "encode") or callable(entry[1])) and not _is_sequence(entry[1]):
            return entry[1], entry[0]  # (name, codec or factory), e.g. from a dict
        if len(entry) in (2, 3) and _is_sequence(entry[1]):
            name, qualities = entry[0], tuple(entry[1])
            description = entry[2] if len(entry) == 3 else ""
            compress, decompress = module.compress, module.decompress

            def factory(name=name, qualities=qualities, description=description):
                return TensorCodecAdapter(name, qualities, compress, decompress, description)

            return factory, name
        raise TypeError("expected (name, qualities[, description]) or (name, codec)")
    name = getattr(entry, "name", None)
    if not isinstance(name, str):
        instance = _validate(entry(), f"project codec factory {entry!r}")
        return _constant(instance), instance.name
    return entry, name


def _is_sequence(value) -> bool:
    return isinstance(value, (list, tuple, range)) or (
        hasattr(value, "__len__") and hasattr(value, "__getitem__") and not isinstance(value, (str, bytes))
    )


for _cls in (JpegCodec, WebpCodec, AvifCodec):
    register_codec(_cls)
del _cls
