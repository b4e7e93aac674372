"""Settings of the PIFS codec: quality levels and everything a bitstream depends on besides the image."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigurationError, FormatError

#: Version 2 adds the ``deblock`` parameter; version 3 a residual layer (``residual.py``: the params
#: ``res_y``, ``res_c``, ``res_bias`` and a payload section after the fractal streams); version 4
#: the ``zoom`` parameter (``zoom.py``: how s× decodes blend interpolation and fractal detail) and
#: always names the residual params (``res_y`` 0: no layer); version 5 codes the fractal code's
#: categorical streams with adaptive models instead of stored histograms (``coding/adaptive.py``;
#: same params as version 4). Older files still decode, unchanged, at every scale (the s× fractal
#: decode plus, in version 3, the residual upsampled linearly).
PAYLOAD_VERSION = 5
RESIDUAL_VERSION = 3
ZOOM_VERSION = 4
ADAPTIVE_VERSION = 5
#: Every payload version this build reads.
READABLE_VERSIONS = (1, 2, RESIDUAL_VERSION, ZOOM_VERSION, ADAPTIVE_VERSION)
#: The zoom parameter the encoder writes: the share of fractal detail, in sixteenths (``zoom.py``).
DEFAULT_ZOOM_DETAIL = 4
NUM_ISOMETRIES = 8

#: Deblocking presets a file may name (``core/deblock.py``): (band width px, strength α, largest
#: step smoothed, 8-bit units). 0 is off. The encoder decodes its file once and keeps whichever
#: gives the highest PSNR, so a file is never worse at 1x than without deblocking.
DEBLOCK_PRESETS: dict[int, tuple[int, float, float]] = {1: (1, 1.0, 32.0), 2: (1, 1.0, 64.0), 3: (1, 1.0, 128.0),
                                                         4: (2, 1.0, 32.0)}

#: Lagrange multipliers of the quality levels (squared 8-bit error per bit): 1 = smallest file.
#: On Kodak they span about 0.08 to 1.1 bits per pixel.
QUALITY_LAMBDAS = {1: 3000.0, 2: 1600.0, 3: 800.0, 4: 400.0, 5: 200.0, 6: 100.0, 7: 50.0, 8: 25.0,
                   9: 12.0, 10: 6.0}
DEFAULT_QUALITY = 4
#: Largest residual quantisation step, in quarters of an 8-bit unit.
MAX_RESIDUAL_QUARTERS = 4096
#: Qualities from this one up quantise scales to 31 levels and means in steps of 2 (else 15 and 3).
FINE_QUANTISATION_FROM = 7



@dataclass(frozen=True)
class PifsConfig:
    """Everything that defines a PIFS bitstream besides the image (stored in the file's params)."""

    quality: int = DEFAULT_QUALITY
    block_sizes: tuple[int, ...] = (32, 16, 8, 4)
    #: Domain lattice stride per block size: half the block (denser = better matches, slower).
    domain_strides: tuple[int, ...] = (16, 8, 4, 4)
    s_max: float = 1.2
    #: s is quantised to {−s_levels … s_levels} · s_max / s_levels; None: by quality (see below).
    s_levels: int | None = None
    #: Quantisation step of block means (8-bit units); None: by quality.
    mean_step: int | None = None
    chroma_weight: float = 0.25  # λ multiplier for chroma planes (4:2:0)
    decode_steps: int = 12
    #: Blocks whose variance (per pixel, 8-bit units²) is below this are coded flat without search.
    flat_variance: float = 2.0
    #: Deblocking preset applied after decoding (:data:`DEBLOCK_PRESETS`; 0: none).
    deblock: int = 0
    #: Residual layer (``residual.py``): quantisation steps of luma and chroma in quarters of an
    #: 8-bit unit (0: no layer) and the reconstruction offset in sixteenths of a step.
    residual_luma: int = 0
    residual_chroma: int = 0
    residual_bias: int = 0
    #: Share of the fractal code's own detail in s× decodes, in sixteenths (``zoom.py``); None:
    #: a file from before version 4, zoomed as those always were.
    zoom_detail: int | None = DEFAULT_ZOOM_DETAIL
    #: Fractal symbols coded with adaptive models (version 5); False: stored histograms (1–4).
    adaptive_symbols: bool = True

    def __post_init__(self):
        if self.quality not in QUALITY_LAMBDAS:
            raise ConfigurationError(f"quality must be one of {sorted(QUALITY_LAMBDAS)}, got {self.quality!r}")
        # Coarser scales and means pay off at low rates, finer ones at the top qualities
        # (measured on Kodak; see docs/pifs.md).
        fine = self.quality >= FINE_QUANTISATION_FROM
        if self.s_levels is None:
            object.__setattr__(self, "s_levels", 15 if fine else 7)
        if self.mean_step is None:
            object.__setattr__(self, "mean_step", 2 if fine else 3)
        if type(self.s_levels) is not int or type(self.mean_step) is not int:
            raise ConfigurationError("s_levels and mean_step must be integers")
        sizes = self.block_sizes
        if len(sizes) != len(self.domain_strides) or not 1 <= len(sizes) <= 6:
            raise ConfigurationError("give 1-6 block sizes and one domain stride per block size")
        if sizes[-1] < 2 or sizes[0] > 128 or any(sizes[i] != 2 * sizes[i + 1] for i in range(len(sizes) - 1)):
            raise ConfigurationError(f"block sizes must halve, from at most 128 down to at least 2 px: {sizes}")
        if any(not 1 <= st <= 2 * n for st, n in zip(self.domain_strides, sizes)):
            raise ConfigurationError(f"domain strides must lie in [1, 2·block]: {self.domain_strides}")
        if not 0 < self.s_max <= 2 or not 1 <= self.s_levels <= 127:
            raise ConfigurationError("s_max must lie in (0, 2] and s_levels in [1, 127]")
        if not 1 <= self.mean_step <= 16 or not 1 <= self.decode_steps <= 64:
            raise ConfigurationError("mean_step must lie in [1, 16] and decode_steps in [1, 64]")
        if type(self.deblock) is not int or self.deblock not in (0, *DEBLOCK_PRESETS):
            raise ConfigurationError(f"deblock must be 0 or one of {sorted(DEBLOCK_PRESETS)}, got {self.deblock!r}")
        res = (self.residual_luma, self.residual_chroma, self.residual_bias)
        if any(type(v) is not int for v in res):
            raise ConfigurationError("residual steps and bias must be integers")
        if self.residual_luma == 0:
            if res != (0, 0, 0):
                raise ConfigurationError("a file without a residual layer has zero residual steps and bias")
        elif not (1 <= self.residual_luma <= MAX_RESIDUAL_QUARTERS and 1 <= self.residual_chroma
                  <= MAX_RESIDUAL_QUARTERS and 0 <= self.residual_bias <= 15):
            raise ConfigurationError(f"residual steps must lie in [1, {MAX_RESIDUAL_QUARTERS}] quarters and "
                                     f"the bias in [0, 15]: {res}")
        if self.zoom_detail is not None and (type(self.zoom_detail) is not int or not 0 <= self.zoom_detail <= 16):
            raise ConfigurationError(f"zoom_detail must be None or an integer in [0, 16], got {self.zoom_detail!r}")
        if type(self.adaptive_symbols) is not bool:
            raise ConfigurationError(f"adaptive_symbols must be True or False, got {self.adaptive_symbols!r}")

    @property
    def lam(self) -> float:
        return QUALITY_LAMBDAS[self.quality]

    @property
    def s_step(self) -> float:
        return self.s_max / self.s_levels

    @property
    def mean_levels(self) -> int:
        """Residuals lie in [−mean_levels, mean_levels]: enough for any 8-bit mean and prediction."""
        return -(-255 // self.mean_step)

    @property
    def has_residual(self) -> bool:
        return self.residual_luma > 0

    def to_params(self) -> dict:
        residual = {"res_y": self.residual_luma, "res_c": self.residual_chroma, "res_bias": self.residual_bias}
        if self.zoom_detail is None:  # a pre-version-4 file's settings: its own version
            if self.adaptive_symbols:
                raise ConfigurationError("adaptive symbols (version 5) need the zoom parameter of version 4; "
                                         "files of versions 1-3 use adaptive_symbols=False")
            version = RESIDUAL_VERSION if self.has_residual else 2
        else:
            version = ADAPTIVE_VERSION if self.adaptive_symbols else ZOOM_VERSION
        params = {
            "v": version,
            "quality": self.quality,
            "blocks": list(self.block_sizes),
            "strides": list(self.domain_strides),
            "s_max": self.s_max,
            "s_levels": self.s_levels,
            "mean_step": self.mean_step,
            "steps": self.decode_steps,
            "deblock": self.deblock,
        }
        if version >= RESIDUAL_VERSION:
            params.update(residual)
        if version >= ZOOM_VERSION:
            params["zoom"] = self.zoom_detail
        return params

    @classmethod
    def from_params(cls, params: dict) -> "PifsConfig":
        """Validate a file's params (hostile input): FormatError on anything unexpected."""
        version = params.get("v")
        if type(version) is not int or version not in READABLE_VERSIONS:  # not true or 1.0: one spelling per file
            raise FormatError(f"unsupported PIFS payload version {version!r}")
        expected = {"v", "quality", "blocks", "strides", "s_max", "s_levels", "mean_step", "steps"}
        if version >= 2:
            expected.add("deblock")
        if version >= 3:
            expected |= {"res_y", "res_c", "res_bias"}
        if version >= ZOOM_VERSION:
            expected.add("zoom")
        if set(params) != expected:
            raise FormatError(f"PIFS version {version} params must have exactly the keys {sorted(expected)}")

        def ints(value, name):
            if not isinstance(value, list) or not all(type(v) is int for v in value):
                raise FormatError(f"PIFS param {name} must be a list of integers")
            return tuple(value)

        try:
            if not all(type(params[k]) is int for k in ("quality", "s_levels", "mean_step", "steps")):
                raise FormatError("PIFS params quality, s_levels, mean_step and steps must be integers")
            for key in ("deblock", "res_y", "res_c", "res_bias", "zoom"):
                if key in params and type(params[key]) is not int:
                    raise FormatError(f"PIFS param {key} must be an integer")
            if version == RESIDUAL_VERSION and params["res_y"] == 0:
                raise FormatError("a version-3 PIFS file has a residual layer (res_y > 0)")
            if type(params["s_max"]) not in (int, float):
                raise FormatError("PIFS param s_max must be a number")
            return cls(
                quality=params["quality"],
                block_sizes=ints(params["blocks"], "blocks"),
                domain_strides=ints(params["strides"], "strides"),
                s_max=float(params["s_max"]),
                s_levels=params["s_levels"],
                mean_step=params["mean_step"],
                decode_steps=params["steps"],
                deblock=params.get("deblock", 0),
                residual_luma=params.get("res_y", 0),
                residual_chroma=params.get("res_c", 0),
                residual_bias=params.get("res_bias", 0),
                zoom_detail=params.get("zoom"),
                adaptive_symbols=version >= ADAPTIVE_VERSION,
            )
        except ConfigurationError as exc:
            raise FormatError(f"invalid PIFS params: {exc}") from None



def config_from_params(params: dict) -> PifsConfig:
    """The codec's settings from a file's params (``FormatError`` on anything invalid)."""
    return PifsConfig.from_params(params)
