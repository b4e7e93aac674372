"""The codec protocol, the registry, and what every decoder shares (scale checks, 8-bit output).

A codec is an object with a ``name`` (the one stored in the ``.clg`` header), its quality
levels, an encoder and a decoder that starts from the container's validated parameters.
:func:`register` makes it reachable by name from :func:`neural_collages.codecs.compress` /
``decompress`` and the command line; nothing else needs to change to add one.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from .. import limits
from ..checks import is_int
from ..coding.container import CODEC_IDS, ContainerHeader
from ..errors import ConfigurationError, FormatError

#: Largest decode scale any codec accepts (the output pixel count is bounded as well).
MAX_SCALE = 16


@runtime_checkable
class Codec(Protocol):
    """What a codec provides (see ``pifs/codec.py`` and ``neural/codec.py``)."""

    name: str

    def qualities(self, model: str | None = None) -> tuple[int, ...]:
        """Quality levels, 1 = smallest files (``model`` picks a model family where a codec has several)."""

    def encode(self, image: torch.Tensor, quality: int | None = None, *, model: str | None = None,
               progress: bool = False) -> bytes:
        """The bytes of a ``.clg`` file for a float image ``(C, H, W)`` in ``[0, 1]`` (``None``: default quality)."""

    def config_from_params(self, params: dict) -> Any:
        """The decoder's settings from a file's params (:class:`FormatError` on anything invalid)."""

    def decode(self, header: ContainerHeader, payload: bytes, config: Any, scale: int = 1,
               return_trajectory: bool = False, dtype: torch.dtype = torch.float32):
        """The image ``(C, s·H, s·W)`` in ``[0, 1]`` (and the decoding steps' frames with ``return_trajectory``).

        ``dtype`` ``torch.uint8`` returns the same 8-bit levels as integers (see :func:`to_8bit_levels`).
        """


_REGISTRY: dict[str, Codec] = {}


def register(codec: Codec) -> Codec:
    """Make ``codec`` available by its name; the name needs a codec id in the container format."""
    if not isinstance(codec, Codec):
        raise ConfigurationError(f"{codec!r} does not implement the Codec protocol")
    if codec.name not in CODEC_IDS:
        raise ConfigurationError(f"codec name {codec.name!r} has no id in the .clg container")
    if codec.name in _REGISTRY and _REGISTRY[codec.name] is not codec:
        raise ConfigurationError(f"a codec named {codec.name!r} is already registered")
    _REGISTRY[codec.name] = codec
    return codec


def registered() -> tuple[str, ...]:
    """Names of the registered codecs."""
    return tuple(_REGISTRY)


def get_codec(name: str) -> Codec:
    """The registered codec ``name`` (:class:`ConfigurationError` if none)."""
    if name not in _REGISTRY:
        raise ConfigurationError(f"unknown codec {name!r}; choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def decoder_for(header: ContainerHeader) -> Codec:
    """The codec that decodes a file with this header (:class:`FormatError` if this build has none)."""
    if header.codec not in _REGISTRY:
        raise FormatError(f"no decoder for codec {header.codec!r} in this build")
    return _REGISTRY[header.codec]


def check_decode_scale(scale, header: ContainerHeader, max_scale: int = MAX_SCALE, max_pixels: int | None = None) -> int:
    """``scale`` if it is an integer in ``[1, max_scale]`` and the output has at most ``max_pixels``
    pixels (default :data:`limits.MAX_PIXELS`, read now) — checked before any decoding work."""
    if not is_int(scale) or not 1 <= scale <= max_scale:
        raise ConfigurationError(f"scale must be an integer in [1, {max_scale}], got {scale!r}")
    limit = limits.MAX_PIXELS if max_pixels is None else max_pixels
    pixels = scale * scale * header.width * header.height
    if pixels > limit:
        raise ConfigurationError(
            f"decoding {header.width}x{header.height} at scale {scale} gives {pixels:,} pixels, "
            f"more than the limit of {limit:,}"
        )
    return int(scale)


#: Values converted per chunk by :func:`to_8bit_levels` (three temporaries of 16 MB, not of the image).
LEVELS_CHUNK = 1 << 22


#: What a decoder can return: 8-bit levels as float32 in [0, 1] (the API default), or as uint8 (a
#: quarter of the memory; what a PNG holds, so ``collage decompress`` decodes to it).
OUTPUT_DTYPES = (torch.float32, torch.uint8)


def check_output_dtype(dtype) -> torch.dtype:
    """``dtype`` if a decoder can return it (:class:`ConfigurationError` otherwise)."""
    if dtype not in OUTPUT_DTYPES:
        raise ConfigurationError(f"decoders return torch.float32 or torch.uint8 images, not {dtype!r}")
    return dtype


def to_8bit_levels(x255: torch.Tensor, gain: float | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A decoder's final output: values on the 8-bit scale, clamped and rounded, as ``float32`` in ``[0, 1]``.

    Every decoder ends here, so the float image it returns is exactly what a PNG of it holds.
    ``gain`` multiplies the input first (``to_8bit_levels(x, 255)`` is ``to_8bit_levels(x * 255)``).
    ``dtype`` ``torch.uint8`` gives the same levels as integers 0–255 (``to_uint8`` of the float result).
    Large inputs are converted in chunks (the same arithmetic per value, bit-identical).
    """
    check_output_dtype(dtype)

    def convert(x: torch.Tensor) -> torch.Tensor:
        if gain is not None:
            x = x * gain
        levels = x.clamp(0, 255).round()
        return levels.to(torch.uint8) if dtype == torch.uint8 else (levels / 255.0).to(torch.float32)

    if x255.numel() <= LEVELS_CHUNK or x255.dim() < 2:
        return convert(x255)
    # Bands of rows, so that a cropped (non-contiguous) view is never copied whole.
    out = torch.empty(x255.shape, dtype=dtype)
    rows = x255.shape[-2]
    band = max(1, LEVELS_CHUNK * rows // x255.numel())
    for a in range(0, rows, band):
        out[..., a : a + band, :] = convert(x255[..., a : a + band, :])
    return out


def codec_options(codec: str, search: str | None, exact_model: bool) -> dict:
    """The codec-specific encode options, refused for the codecs they do not apply to."""
    options = {}
    if search is not None:
        if codec != "pifs":
            raise ConfigurationError("search applies to the pifs codec only")
        options["search"] = search
    if exact_model:
        if codec != "neural":
            raise ConfigurationError("exact_model applies to the neural codec only")
        options["exact_model"] = True
    return options
