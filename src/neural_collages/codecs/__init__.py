"""Image codecs of the project. Each writes the shared ``.clg`` container (``neural_collages.container``).

``compress(image, codec, quality)`` and ``decompress(data, scale)`` dispatch on the codec name
(stored in every file's header), so a file decodes without being told which codec made it.
"""

from __future__ import annotations

import torch

from ..container import unpack
from ..errors import ConfigurationError, FormatError
from . import neural, pifs

#: Codec name -> decoder module. Every module has ``decode_parts`` and ``config_from_params``.
CODECS = {"pifs": pifs, "neural": neural}


def quality_levels(codec: str, model: str | None = None) -> tuple[int, ...]:
    """Quality levels of ``codec`` (for the neural codec: of its ``model``), 1 = smallest files."""
    if codec == "pifs":
        return tuple(sorted(pifs.QUALITY_LAMBDAS))
    if codec == "neural":
        return neural.available_qualities(model or neural.DEFAULT_MODEL)
    raise ConfigurationError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")


def compress(image: torch.Tensor, codec: str = "pifs", quality: int | None = None, progress: bool = False,
             model: str | None = None) -> bytes:
    """Compress a float image ``(C, H, W)`` in ``[0, 1]`` to the bytes of a ``.clg`` file.

    ``model`` (neural codec only) picks the trained model family: ``photo`` or ``aerial``.
    """
    levels = quality_levels(codec, model)
    if codec == "pifs":
        if model is not None:
            raise ConfigurationError("--model applies to the neural codec only")
        config = pifs.PifsConfig(quality=pifs.DEFAULT_QUALITY if quality is None else quality)
        return pifs.encode(image, config, progress=progress)
    if not levels:
        raise ConfigurationError(f"no {model or neural.DEFAULT_MODEL} models are shipped with this build")
    default = neural.DEFAULT_QUALITY if neural.DEFAULT_QUALITY in levels else levels[0]
    return neural.encode(image, model or neural.DEFAULT_MODEL, default if quality is None else quality)


def decompress(data: bytes, scale: int = 1, return_trajectory: bool = False):
    """Decode the bytes of any ``.clg`` file to a float image ``(C, s·H, s·W)`` in ``[0, 1]``.

    With ``return_trajectory``, returns ``(image, frames)``: the images after each decoding step.
    """
    header, payload = unpack(data)
    if header.codec not in CODECS:
        raise FormatError(f"no decoder for codec {header.codec!r} in this build")
    module = CODECS[header.codec]
    config = module.config_from_params(header.params)
    return module.decode_parts(header, payload, config, scale, return_trajectory=return_trajectory)


class PifsSweep:
    """The PIFS codec for ``benchmarks/``' rate–distortion sweeps (the ``ImageCodec`` protocol).

    The exhaustive search does not depend on the quality, so a sweep over qualities searches each
    image once (``pifs.analyse``) and only redoes the rate–distortion decisions and the entropy
    coding per quality (``pifs.encode_analysed``); the files are identical to ``compress``'s.
    ``last_encode_seconds`` reports what a standalone encode at that quality costs: the image's
    search time plus that quality's decision and coding time, both measured.
    """

    name = "pifs"
    qualities = tuple(sorted(pifs.QUALITY_LAMBDAS))
    description = (
        "fractal PIFS codec (neural_collages): exact search, RD quadtree 32-4 px, 8 isometries, "
        "YCbCr 4:2:0, constriction range coding; one search per image reused across qualities, "
        "encoding_time = search + per-quality coding"
    )

    def __init__(self):
        # Image digest -> (search result, search seconds). A few MB per Kodak image; sweeps may
        # visit the images quality-major, so every image of the sweep is kept.
        self._searched: dict[tuple, tuple[list, float]] = {}
        self.last_encode_seconds = None

    def encode(self, image, quality) -> bytes:
        import hashlib
        import time

        x = torch.from_numpy(image).permute(2, 0, 1).to(torch.float32) / 255.0
        key = (image.shape, hashlib.sha1(image.tobytes()).hexdigest())
        if key not in self._searched:
            t0 = time.perf_counter()
            analyses = pifs.analyse(x, pifs.PifsConfig())
            self._searched[key] = (analyses, time.perf_counter() - t0)
        analyses, search_seconds = self._searched[key]
        t0 = time.perf_counter()
        data = pifs.encode_analysed(x, analyses, pifs.PifsConfig(quality=quality))
        self.last_encode_seconds = search_seconds + time.perf_counter() - t0
        return data

    def versions(self) -> dict[str, str]:
        import constriction

        from .. import __version__

        return {"neural_collages": __version__, "torch": torch.__version__,
                "constriction": getattr(constriction, "__version__", "?")}

    def decode(self, data: bytes):
        from ..images import to_uint8

        return to_uint8(decompress(data)).permute(1, 2, 0).contiguous().numpy()


class NeuralBenchmark:
    """The Neural Collage codec (photo model) for ``benchmarks/``' harness (the ``ImageCodec`` protocol)."""

    name = "neural"
    description = (
        "Neural Collage codec (neural_collages): CNN encoder -> dense collage codes on 32-px crops "
        "(local 2:1 domains x 8 isometries + 63 learned aux patches, centred maps), YCbCr 4:2:0, "
        "DPCM range means, factorized learned prior with integer tables, constriction range coding"
    )

    def __init__(self, model: str = "photo"):
        self.model = model
        self.qualities = neural.available_qualities(model)

    def encode(self, image, quality) -> bytes:
        x = torch.from_numpy(image).permute(2, 0, 1).to(torch.float32) / 255.0
        return neural.encode(x, self.model, quality)

    def decode(self, data: bytes):
        from ..images import to_uint8

        return to_uint8(decompress(data)).permute(1, 2, 0).contiguous().numpy()

    versions = PifsSweep.versions


def benchmark_codecs():
    """Codecs for ``benchmarks/``' rate–distortion harness (see ``benchmarks/codecs.py``)."""
    return [PifsSweep, NeuralBenchmark]
