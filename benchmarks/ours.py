"""This project's codecs behind the benchmark harness's ``ImageCodec`` interface (``codecs.py``).

Benchmark adapters live here, not in the library: the library's codecs know nothing of sweeps.
"""

from __future__ import annotations

import torch

from neural_collages.codecs import compress, decompress, neural, pifs
from neural_collages.imaging.io import to_uint8

__all__ = ["PifsSweep", "NeuralBenchmark", "NeuralPhotoOnly", "benchmark_codecs", "compress", "decompress"]


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
        "YCbCr 4:2:0, constriction range coding, deblocking and a DCT residual layer chosen per file by RD cost; "
        "one search per image reused across qualities, "
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

        from neural_collages import __version__

        return {"neural_collages": __version__, "torch": torch.__version__,
                "constriction": getattr(constriction, "__version__", "?")}

    def decode(self, data: bytes):

        return to_uint8(decompress(data)).permute(1, 2, 0).contiguous().numpy()


class NeuralBenchmark:
    """The Neural Collage codec for ``benchmarks/``' harness (the ``ImageCodec`` protocol), as
    ``collage compress --codec neural`` runs it: the photo ladder, each image also coded with the
    nearest aerial model and the cheaper code kept, deblocking chosen per file."""

    name = "neural"
    description = (
        "Neural Collage codec (neural_collages): CNN encoder -> dense collage codes on 32-px crops "
        "(local 2:1 domains x 8 isometries + 63 learned aux patches, centred maps), YCbCr 4:2:0, "
        "DPCM range means, factorized learned prior with integer tables, constriction range coding; "
        "per file: deblocking presets and the photo or nearest-lambda aerial model, by RD cost"
    )

    def __init__(self, model: str = "photo", exact_model: bool = False):
        self.model, self.exact_model = model, exact_model
        self.qualities = neural.available_qualities(model)

    def encode(self, image, quality) -> bytes:
        x = torch.from_numpy(image).permute(2, 0, 1).to(torch.float32) / 255.0
        return neural.encode(x, self.model, quality, choose_model=not self.exact_model)

    def decode(self, data: bytes):

        return to_uint8(decompress(data)).permute(1, 2, 0).contiguous().numpy()

    versions = PifsSweep.versions


class NeuralPhotoOnly(NeuralBenchmark):
    """The Neural Collage codec restricted to the photo models (``--exact-model``): the baseline
    of the per-image model choice."""

    name = "neural-photo-only"
    description = NeuralBenchmark.description.replace("the photo or nearest-lambda aerial model",
                                                      "always the photo model")

    def __init__(self):
        super().__init__("photo", exact_model=True)


def benchmark_codecs():
    """This project's codecs for the rate–distortion harness (``codecs.load_project_codecs``)."""
    return [PifsSweep, NeuralBenchmark, NeuralPhotoOnly]
