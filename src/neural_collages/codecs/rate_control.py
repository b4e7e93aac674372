"""Rate control: the best file a codec makes within a size budget (``--bpp`` / ``--max-bytes``).

A quality level says little about size (one image takes 0.14 bpp at neural quality 3, another
0.99), so users ask for a size instead. The fractal codec searches its Lagrange multiplier λ
continuously, finer than its 8 quality levels: the domain search is done once
(:func:`~neural_collages.codecs.pifs.analysis.analyse`) and each trial only redoes the
rate–distortion decisions and the entropy coding. λ is an encoder choice the decoder never
needs, so the files are ordinary files of the current format. The neural codec has one model per
quality, so it tries its shipped qualities. Either way the result is the largest file (the best
quality) whose size is within the budget; when even the smallest file is too large, the error
says how large it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import BudgetError, ConfigurationError
from .base import codec_options, get_codec

#: Bisection steps on log λ (each one an RD pass and an entropy coding, ~0.5 s for a Kodak image).
LAMBDA_STEPS = 12
#: λ searched from a quarter of the best quality's to four times the smallest file's.
LAMBDA_SPAN = 4.0


@dataclass(frozen=True)
class SizedFile:
    """A file made to a budget: its bytes and what setting made it."""

    data: bytes
    budget: int
    quality: int  #: the quality level (pifs: the level whose quantisation and λ are nearest)
    lam: float | None = None  #: pifs: the Lagrange multiplier used

    @property
    def size(self) -> int:
        return len(self.data)


def budget_bytes(height: int, width: int, bpp: float | None = None, max_bytes: int | None = None) -> int:
    """The byte budget from exactly one of ``bpp`` (bits per pixel) or ``max_bytes``."""
    if (bpp is None) == (max_bytes is None):
        raise ConfigurationError("give exactly one of bpp and max_bytes")
    if bpp is not None:
        if isinstance(bpp, bool) or not isinstance(bpp, (int, float)) or not math.isfinite(bpp) or bpp <= 0:
            raise ConfigurationError(f"bpp must be a positive number, got {bpp!r}")
        return int(bpp * height * width // 8)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ConfigurationError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    return max_bytes


def compress_to_size(image: torch.Tensor, codec: str, max_bytes: int, model: str | None = None,
                     progress: bool = False, search: str | None = None, exact_model: bool = False) -> SizedFile:
    """The best file of ``codec`` for ``image`` with at most ``max_bytes`` bytes (:class:`BudgetError` if none).

    ``search`` (pifs only): the domain search, ``"exhaustive"`` (default) or ``"fast"``;
    ``exact_model`` (neural only): no rate–distortion choice among model families.
    """
    budget_bytes(1, 1, max_bytes=max_bytes)
    if codec == "pifs":
        if model is not None:
            raise ConfigurationError("model families apply to the neural codec only")
        return _pifs_to_size(image, max_bytes, progress, search or "exhaustive")
    options = codec_options(codec, search, exact_model)
    chosen = get_codec(codec)
    best, smallest = None, None
    for quality in chosen.qualities(model):
        data = chosen.encode(image, quality, model=model, **options)
        smallest = len(data) if smallest is None else min(smallest, len(data))
        if len(data) <= max_bytes and (best is None or len(data) > best.size):
            best = SizedFile(data, max_bytes, quality)
    if best is None:
        raise BudgetError(f"the smallest {codec} file of this image has {smallest:,} bytes, more than the "
                          f"budget of {max_bytes:,}")
    return best


def _pifs_to_size(image: torch.Tensor, max_bytes: int, progress: bool, search: str) -> SizedFile:
    from .pifs.analysis import analyse
    from .pifs.codec import encode_analysed
    from .pifs.config import FINE_QUANTISATION_FROM, QUALITY_LAMBDAS, PifsConfig

    def nearest(lam: float) -> PifsConfig:
        # The quantisation family the λ belongs to (fine from quality 7's λ down), and in it the
        # quality whose λ is nearest on a log scale (what `collage info` shows).
        fine = lam <= QUALITY_LAMBDAS[FINE_QUANTISATION_FROM] * 1.0001
        family = [q for q in QUALITY_LAMBDAS if (q >= FINE_QUANTISATION_FROM) == fine]
        return PifsConfig(quality=min(family, key=lambda q: abs(math.log(QUALITY_LAMBDAS[q] / lam))))

    analyses = analyse(image, PifsConfig(), progress=None, search=search)
    tried: dict[float, bytes] = {}

    def trial(lam: float) -> bytes:
        if lam not in tried:
            # The deblocking choice (one decode per trial) waits for the winner: it changes one digit of the params.
            tried[lam] = encode_analysed(image, analyses, nearest(lam), lam=lam, choose_deblock=False)
        return tried[lam]

    lo, hi = min(QUALITY_LAMBDAS.values()) / LAMBDA_SPAN, max(QUALITY_LAMBDAS.values()) * LAMBDA_SPAN
    if len(trial(hi)) > max_bytes:
        raise BudgetError(f"the smallest pifs file of this image has {len(trial(hi)):,} bytes, more than the "
                          f"budget of {max_bytes:,}")
    if len(trial(lo)) > max_bytes:
        # Bisect on log λ between a λ that fits (hi) and one that does not (lo).
        for _ in range(LAMBDA_STEPS):
            mid = math.sqrt(lo * hi)
            if len(trial(mid)) <= max_bytes:
                hi = mid
            else:
                lo = mid
    # Size is not strictly monotone in λ: of every trial that fits, keep the largest file.
    lam = max((l for l, d in tried.items() if len(d) <= max_bytes), key=lambda l: (len(tried[l]), -l))
    final = encode_analysed(image, analyses, nearest(lam), lam=lam)
    if len(final) > max_bytes:  # cannot happen with one-digit presets; never return an oversized file
        final = tried[lam]
    return SizedFile(final, max_bytes, nearest(lam).quality, lam)
