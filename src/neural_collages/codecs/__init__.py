"""Image codecs of the project. Each writes the shared ``.clg`` container (``neural_collages.container``).

``compress(image, codec, quality)`` and ``decompress(data, scale)`` dispatch on the codec name
(stored in every file's header), so a file decodes without being told which codec made it.
"""

from __future__ import annotations

import torch

from ..container import unpack
from ..errors import ConfigurationError, FormatError
from . import pifs

#: Codec name -> (module, quality levels). Every module has ``encode``, ``decode_parts`` and
#: ``config_from_params``.
CODECS = {"pifs": (pifs, tuple(sorted(pifs.QUALITY_LAMBDAS)))}


def quality_levels(codec: str) -> tuple[int, ...]:
    if codec not in CODECS:
        raise ConfigurationError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    return CODECS[codec][1]


def compress(image: torch.Tensor, codec: str = "pifs", quality: int | None = None, progress: bool = False) -> bytes:
    """Compress a float image ``(C, H, W)`` in ``[0, 1]`` to the bytes of a ``.clg`` file."""
    levels = quality_levels(codec)
    if codec == "pifs":
        config = pifs.PifsConfig(quality=pifs.DEFAULT_QUALITY if quality is None else quality)
        return pifs.encode(image, config, progress=progress)
    raise ConfigurationError(f"codec {codec!r} cannot compress (qualities {levels})")  # pragma: no cover


def decompress(data: bytes, scale: int = 1, return_trajectory: bool = False):
    """Decode the bytes of any ``.clg`` file to a float image ``(C, s·H, s·W)`` in ``[0, 1]``.

    With ``return_trajectory``, returns ``(image, frames)``: the images after each decoding step.
    """
    header, payload = unpack(data)
    if header.codec not in CODECS:
        raise FormatError(f"no decoder for codec {header.codec!r} in this build")
    module = CODECS[header.codec][0]
    config = module.config_from_params(header.params)
    return module.decode_parts(header, payload, config, scale, return_trajectory=return_trajectory)


def benchmark_codecs():
    """Codecs for ``benchmarks/``' rate–distortion harness (see ``benchmarks/codecs.py``)."""
    return [(name, levels) for name, (_, levels) in CODECS.items()]
