"""Image codecs. Each writes the shared ``.clg`` container and is registered by name (``base.py``).

``compress(image, codec, quality)`` and ``decompress(data, scale)`` dispatch through the
registry on the codec name stored in every file's header, so a file decodes without being told
which codec made it.
"""

from __future__ import annotations

import torch

from ..coding.container import unpack
from ..errors import ConfigurationError
from . import fractal_art, neural, pifs
from .base import (MAX_SCALE, Codec, check_decode_scale, check_output_dtype, codec_options, decoder_for, get_codec,
                   register, registered, to_8bit_levels)
from .files import read_container, write_container
from .rate_control import SizedFile, budget_bytes, compress_to_size

__all__ = [
    "Codec",
    "MAX_SCALE",
    "SizedFile",
    "budget_bytes",
    "check_decode_scale",
    "compress",
    "compress_to_size",
    "decompress",
    "fractal_art",
    "get_codec",
    "neural",
    "pifs",
    "quality_levels",
    "read_container",
    "register",
    "registered",
    "to_8bit_levels",
    "write_container",
]


def quality_levels(codec: str, model: str | None = None) -> tuple[int, ...]:
    """Quality levels of ``codec`` (for the neural codec: of its ``model`` family), 1 = smallest files."""
    return get_codec(codec).qualities(model)


def compress(image: torch.Tensor, codec: str = "pifs", quality: int | None = None, progress: bool = False,
             model: str | None = None, search: str | None = None, exact_model: bool = False) -> bytes:
    """Compress a float image ``(C, H, W)`` in ``[0, 1]`` to the bytes of a ``.clg`` file.

    ``quality`` defaults to the codec's default; ``model`` (neural codec only) names the model
    family whose quality ladder (rate–distortion trade-off) applies: ``photo`` or ``aerial``. The
    neural encoder also tries the other families' nearest models and keeps the cheaper code in
    rate–distortion cost, unless ``exact_model``.
    """
    return get_codec(codec).encode(image, quality, model=model, progress=progress,
                                   **codec_options(codec, search, exact_model))


def decompress(data: bytes, scale: int = 1, return_trajectory: bool = False, max_pixels: int | None = None,
               dtype: torch.dtype = torch.float32):
    """Decode the bytes of any ``.clg`` file to a float image ``(C, s·H, s·W)`` in ``[0, 1]``.

    With ``return_trajectory``, returns ``(image, frames)``: the images after each decoding step.
    ``max_pixels`` (default :data:`neural_collages.limits.MAX_PIXELS`) bounds the output, checked
    from the header before any work. ``dtype=torch.uint8`` returns the same 8-bit levels as
    integers 0–255 (a quarter of the memory: a 2^26-pixel RGB image is 0.19 GiB instead of 0.75).
    """
    header, payload = unpack(data)
    if max_pixels is not None and (not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1):
        raise ConfigurationError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    check_decode_scale(scale, header, max_pixels=max_pixels)
    check_output_dtype(dtype)
    codec = decoder_for(header)
    config = codec.config_from_params(header.params)
    return codec.decode(header, payload, config, scale, return_trajectory=return_trajectory, dtype=dtype)
