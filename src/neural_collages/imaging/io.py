"""Image files as tensors: loading, saving (atomic), animations, 8-bit conversion.

Convention: a float image is a ``float32`` tensor of shape ``(C, H, W)`` (or ``(B, C, H, W)``
where stated) with values in ``[0, 1]``; an 8-bit image is a ``uint8`` tensor with the same layout.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .. import limits
from ..errors import ConfigurationError, ImageError, OutputExistsError, TransparencyError
from .atomic import atomic_write_bytes

__all__ = ["load_image", "load_image_bytes", "save_image", "encode_image", "save_animation", "to_uint8", "to_float"]

# ITU-R BT.601 luma weights.
_LUMA = (0.299, 0.587, 0.114)

_MODES = ("rgb", "grey", "keep")
_ALPHA = ("error", "composite", "drop", "keep")

#: Image suffixes :func:`save_image` writes, and the Pillow format of each.
IMAGE_SUFFIXES = _FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
_GREY_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")


# --------------------------------------------------------------------------- loading


def load_image(
    path: str | os.PathLike,
    mode: str = "rgb",
    alpha: str = "error",
    background: float | Sequence[float] = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Read an image file as a ``float32`` tensor ``(C, H, W)`` in ``[0, 1]``.

    ``mode``: ``"rgb"`` gives 3 channels (greyscale is replicated), ``"grey"`` 1 channel
    (BT.601 luma of colour images), ``"keep"`` 1 channel for greyscale files and 3 for colour
    ones (RGB, palette, CMYK, ...). 16-bit greyscale is scaled by 1/65535; Pillow itself reduces
    16-bit-per-channel colour PNGs to 8 bit. The EXIF orientation is applied.

    ``alpha`` says what to do with a transparency channel (RGBA, LA, PA, palette or colour-key
    transparency) that is not fully opaque: ``"error"`` (default) raises :class:`ImageError`,
    ``"composite"`` blends onto ``background`` (RGB in ``[0, 1]``, or one grey value; greyscale
    images blend onto its luma), ``"drop"`` discards it, and ``"keep"`` returns RGBA, 4 channels
    (also for greyscale files; only with ``mode="rgb"`` or ``"keep"``). A fully opaque alpha
    channel is dropped silently, except with ``alpha="keep"``, which keeps it.

    Raises :class:`ImageError` naming the path for a missing file, a directory, a file that is
    not a readable image, a truncated file, or an image larger than :data:`limits.MAX_PIXELS`.
    """
    _check_load_options(mode, alpha)
    bg = _background_rgb(background)

    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image file")
    return _load(path, str(path), mode, alpha, bg)


def load_image_bytes(
    data: bytes,
    name: str = "<bytes>",
    mode: str = "rgb",
    alpha: str = "error",
    background: float | Sequence[float] = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """:func:`load_image` for the bytes of an image file (``name`` labels the error messages).

    Lets a worker process decode an image it was sent rather than read it from a shared disk.
    """
    _check_load_options(mode, alpha)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ConfigurationError(f"data must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError(f"{name}: empty file, not an image")
    return _load(io.BytesIO(data), name, mode, alpha, _background_rgb(background))


def _check_load_options(mode: str, alpha: str) -> None:
    if mode not in _MODES:
        raise ConfigurationError(f"mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
    if alpha not in _ALPHA:
        raise ConfigurationError(f"alpha must be one of {', '.join(map(repr, _ALPHA))}, got {alpha!r}")
    if alpha == "keep" and mode == "grey":
        raise ConfigurationError('alpha="keep" returns RGBA (4 channels); it needs mode="rgb" or mode="keep"')


def _load(source, label: str, mode: str, alpha: str, bg: tuple[float, float, float]) -> torch.Tensor:
    """Decode ``source`` (a path or a binary file object); ``label`` names it in errors."""
    path = label
    try:
        colour, grey_source, transparency = _decode(source, label)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not an image file in a format Pillow can read") from exc
    except Exception as exc:
        # Pillow's plugins raise a zoo of exception types on malformed input (OSError,
        # SyntaxError, ValueError, EOFError, struct.error, IndexError, ...); a file we cannot
        # decode is an ImageError whatever the type.
        raise ImageError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc

    # colour: H x W x C float32 (C = 1 or 3); transparency: H x W float32 or None.
    keep_alpha = alpha == "keep" and transparency is not None
    if transparency is not None and not keep_alpha and bool((transparency < 1.0).any()):
        if alpha == "error":
            raise TransparencyError(
                f"{path}: image has a transparent alpha channel; pass alpha='composite' (blend onto a "
                "background), alpha='drop' (discard it) or alpha='keep' (return RGBA, 4 channels)"
            )
        if alpha == "composite":
            back = np.asarray(bg, dtype=np.float32)
            if colour.shape[2] == 1:
                back = np.float32(np.dot(_LUMA, back)).reshape(1)
            a = transparency[:, :, None]
            colour = colour * a + back * (1.0 - a)
        # "drop": nothing to do.

    if keep_alpha:
        if colour.shape[2] == 1:
            colour = np.repeat(colour, 3, axis=2)
        colour = np.concatenate([colour, transparency[:, :, None]], axis=2)
    elif mode == "rgb" and colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    elif mode == "grey" and colour.shape[2] == 3:
        colour = (colour @ np.asarray(_LUMA, dtype=np.float32))[:, :, None]
    out = torch.from_numpy(np.ascontiguousarray(colour, dtype=np.float32)).permute(2, 0, 1).contiguous()
    return out.clamp_(0.0, 1.0)


def _background_rgb(background) -> tuple[float, float, float]:
    if isinstance(background, (int, float)):
        values = (float(background),) * 3
    else:
        try:
            values = tuple(float(v) for v in background)
        except (TypeError, ValueError):
            values = ()
        if len(values) == 1:
            values = values * 3
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise ConfigurationError(f"background must be one value or an RGB triple in [0, 1], got {background!r}")
    return values  # type: ignore[return-value]


def _decode(source, label: str) -> tuple[np.ndarray, bool, np.ndarray | None]:
    """Decode ``source`` into (colour H x W x C float32, is greyscale, alpha H x W or None)."""
    with warnings.catch_warnings():
        # Our own limits.MAX_PIXELS check below is the limit; Pillow's warning threshold is lower
        # than a user may have set limits.MAX_PIXELS to.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(source) as im:
            width, height = im.size
            if width * height > limits.MAX_PIXELS:
                raise ImageError(
                    f"{label}: {width}x{height} image has more than the {limits.MAX_PIXELS} pixels allowed "
                    "(neural_collages.limits.MAX_PIXELS); refusing to decode it"
                )
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_arrays(im)


def _to_arrays(im: Image.Image) -> tuple[np.ndarray, bool, np.ndarray | None]:
    m = im.mode
    if m in ("RGBa", "La"):  # premultiplied alpha
        im = im.convert("RGBA" if m == "RGBa" else "LA")
        m = im.mode
    has_key = "transparency" in im.info
    if m == "PA" or (m == "P" and has_key) or (m in ("L", "RGB") and has_key):
        # Palette transparency or a colour key: let Pillow expand it to a real alpha channel.
        grey = m == "L"
        im = im.convert("LA" if grey else "RGBA")
        m = im.mode

    alpha = None
    if m in ("RGBA", "LA"):
        arr = np.asarray(im, dtype=np.uint8)
        alpha = arr[:, :, -1].astype(np.float32) / 255.0
        colour = arr[:, :, :-1].astype(np.float32) / 255.0
        return colour, m == "LA", alpha
    if m in ("I;16", "I;16L", "I;16B", "I;16N"):
        arr = np.asarray(im).astype(np.float32) / 65535.0
        return arr[:, :, None], True, None
    if m == "I":
        arr = np.asarray(im, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError("32-bit integer pixels outside 0..65535 are not supported")
        return (arr.astype(np.float32) / 65535.0)[:, :, None], True, None
    if m == "F":
        arr = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        return arr[:, :, None], True, None
    if m in ("1", "L"):
        arr = np.asarray(im.convert("L"), dtype=np.uint8).astype(np.float32) / 255.0
        return arr[:, :, None], True, None
    # RGB, P, CMYK, YCbCr, LAB, HSV, RGBX, ...: let Pillow convert to RGB.
    arr = np.asarray(im.convert("RGB"), dtype=np.uint8).astype(np.float32) / 255.0
    return arr, False, None


# --------------------------------------------------------------------------- saving


def save_image(image, path: str | os.PathLike, force: bool = False, quality: int | None = None) -> None:
    """Write an image; the format comes from the suffix (.png .jpg .jpeg .webp .bmp .tif .tiff).

    ``image`` is a float tensor ``(C, H, W)`` in ``[0, 1]`` (clamped and rounded with
    :func:`to_uint8`), a ``uint8`` tensor ``(C, H, W)``, or a numpy ``uint8`` array ``(H, W, C)``
    or ``(H, W)``. 1 channel is written as greyscale, 3 as RGB, 4 as RGBA. ``quality``
    (1-100) applies to JPEG and WebP only; without it JPEG uses Pillow's default (75) and WebP
    is written lossless. The file is written atomically and an existing file is only replaced
    with ``force=True`` (else :class:`OutputExistsError`).
    """
    path = Path(path)
    fmt = _format_of(path)
    if not force and os.path.lexists(path):  # fail before spending time on encoding
        raise OutputExistsError(f"{path} already exists; refusing to overwrite it (pass force=True to replace it)", path)
    buffer = _encode(image, fmt, quality, path)
    # getbuffer(): the encoded bytes are written without a copy (getvalue() makes one: 92 MB
    # for a 13x Kodak PNG, benchmarks/decode_limits.py).
    with buffer.getbuffer() as view:
        atomic_write_bytes(path, view, force=force)


def encode_image(image, suffix: str = ".png", quality: int | None = None) -> bytes:
    """The bytes :func:`save_image` would write to a file with this ``suffix`` (same arguments)."""
    fmt = _format_of(Path(f"image{suffix}"))
    return _encode(image, fmt, quality, Path(f"image{suffix}")).getvalue()


def _format_of(path: Path) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(
            f"{path}: unknown image suffix {path.suffix!r}; use one of {', '.join(sorted(_FORMATS))}"
        )
    return fmt


def _encode(image, fmt: str, quality: int | None, path: Path) -> io.BytesIO:
    """``image`` encoded as ``fmt`` in a buffer (``path`` names the output in errors)."""
    params: dict = {}
    if quality is not None:
        if fmt not in ("JPEG", "WEBP"):
            raise ConfigurationError(f"quality only applies to .jpg/.jpeg/.webp files, not {path.suffix}")
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise ConfigurationError(f"quality must be an integer in 1..100, got {quality!r}")
        params["quality"] = quality
    elif fmt == "WEBP":
        params["lossless"] = True

    hwc = _to_hwc_uint8(image)
    channels = hwc.shape[2]
    pil_mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if pil_mode is None:
        raise ImageError(f"{path}: cannot save an image with {channels} channels (need 1, 3 or 4)")
    if pil_mode == "RGBA" and fmt == "JPEG":
        raise ImageError(f"{path}: JPEG cannot store an alpha channel; drop it or save as .png")

    pil = Image.fromarray(hwc[:, :, 0] if channels == 1 else hwc, mode=pil_mode)
    del hwc  # Pillow holds its own copy: ours would be one more image-sized buffer during encoding
    buffer = io.BytesIO()
    try:
        pil.save(buffer, format=fmt, **params)
    except Exception as exc:
        raise ImageError(f"{path}: cannot encode as {fmt} ({type(exc).__name__}: {exc})") from exc
    return buffer


def save_animation(
    frames: Iterable,
    path: str | os.PathLike,
    force: bool = False,
    duration_ms: int = 80,
    loop: int = 0,
) -> None:
    """Write ``frames`` (images as accepted by :func:`save_image`, all one size) as an animated GIF.

    ``duration_ms`` is the time per frame and ``loop`` the repeat count (0 = forever). Written
    atomically, refusing to overwrite without ``force`` like :func:`save_image`.
    """
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ImageError(f"{path}: animations are written as GIF; use a .gif suffix")
    if duration_ms <= 0:
        raise ConfigurationError(f"duration_ms must be positive, got {duration_ms}")
    arrays = [_to_hwc_uint8(f) for f in frames]
    if not arrays:
        raise ConfigurationError("save_animation needs at least one frame")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ImageError(f"{path}: animation frames differ in shape: {sorted(shapes)}")
    channels = arrays[0].shape[2]
    if channels not in (1, 3):
        raise ImageError(f"{path}: animation frames need 1 or 3 channels, got {channels}")
    if not force and os.path.lexists(path):
        raise OutputExistsError(f"{path} already exists; refusing to overwrite it (pass force=True to replace it)", path)
    images = [Image.fromarray(a[:, :, 0] if channels == 1 else a, mode="L" if channels == 1 else "RGB") for a in arrays]
    buffer = io.BytesIO()
    try:
        images[0].save(
            buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=loop
        )
    except Exception as exc:
        raise ImageError(f"{path}: cannot encode GIF ({type(exc).__name__}: {exc})") from exc
    atomic_write_bytes(path, buffer.getvalue(), force=force)


def _to_hwc_uint8(image) -> np.ndarray:
    """Normalise a savable image to a contiguous numpy ``uint8`` array ``(H, W, C)``."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ImageError(f"numpy images must be uint8 (H, W[, C]), got dtype {image.dtype}")
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise ImageError(f"numpy images must have shape (H, W) or (H, W, C), got {image.shape}")
        arr = image
    elif isinstance(image, torch.Tensor):
        t = image.detach()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 2:
            t = t.unsqueeze(0)
        if t.ndim != 3:
            raise ImageError(f"image tensors must have shape (C, H, W), got {tuple(image.shape)}")
        if t.is_floating_point():
            t = to_uint8(t)
        elif t.dtype != torch.uint8:
            raise ImageError(f"image tensors must be floating point or uint8, got {t.dtype}")
        arr = t.cpu().permute(1, 2, 0).numpy()
    else:
        raise ImageError(f"cannot save an object of type {type(image).__name__} as an image")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"cannot save an empty image of shape {arr.shape}")
    return np.ascontiguousarray(arr)


# --------------------------------------------------------------------------- conversions


#: Values converted to 8 bit at a time (temporaries of 16 MB).
UINT8_CHUNK = 1 << 22


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """``round(clamp(x, 0, 1) * 255)`` as ``uint8``, same shape; ``uint8`` input is returned as is."""
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise ImageError(f"to_uint8 expects a floating point tensor in [0, 1], got {x.dtype}")
    # In chunks: a 2^26-pixel RGB image would otherwise need two 0.8 GB float temporaries.
    flat = x.reshape(-1)
    out = torch.empty(flat.shape, dtype=torch.uint8)
    for a in range(0, flat.numel(), UINT8_CHUNK):
        part = flat[a : a + UINT8_CHUNK]
        if bool(torch.isnan(part).any()):
            raise ImageError("image contains NaN values; cannot convert it to 8 bit")
        out[a : a + UINT8_CHUNK] = (part.to(torch.float32).clamp(0.0, 1.0) * 255.0).round_()
    return out.reshape(x.shape)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """``uint8`` to ``float32`` in ``[0, 1]`` (divide by 255), same shape; float input becomes float32."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    if x.is_floating_point():
        return x.to(torch.float32)
    raise ImageError(f"to_float expects a uint8 tensor, got {x.dtype}")
