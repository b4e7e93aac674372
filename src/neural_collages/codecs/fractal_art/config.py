"""Settings of a fractal-art code: the collage whose one domain is the whole image."""

from __future__ import annotations

from dataclasses import dataclass

from ...checks import is_int
from ...core.operator import CollageOperator
from ...core.partitions import ISOMETRY_NAMES
from ...errors import ConfigurationError, FormatError

PAYLOAD_VERSION = 1
#: Largest number of decoding steps a file may ask for (each is one pass over the output).
MAX_DECODE_STEPS = 256
#: Largest number of auxiliary patches a file may hold.
MAX_AUX = 64
CHANNEL_MAPS = ("per_channel", "shared")


@dataclass(frozen=True)
class ArtConfig:
    """Everything a fractal-art code depends on besides its weights.

    ``padded`` is the operator's base size: the image padded to whole range cells.
    """

    padded: tuple[int, int]
    range_size: int = 8
    isometries: tuple[int, ...] = tuple(range(8))
    s_max: float = 0.9
    aux: int = 0
    channel_maps: str = "per_channel"
    decode_steps: int = 64

    def __post_init__(self):
        H, W = self.padded
        r = self.range_size
        if not is_int(r) or not 2 <= r <= 64:
            raise ConfigurationError(f"range size must be an integer in [2, 64], got {r!r}")
        if not (is_int(H) and is_int(W)) or H < r or W < r or H % r or W % r:
            raise ConfigurationError(f"the padded size {H}x{W} must be whole {r}x{r} range cells")
        if not self.isometries or len(set(self.isometries)) != len(self.isometries) or not all(
            is_int(i) and 0 <= i < 8 for i in self.isometries
        ):
            raise ConfigurationError(f"isometries must be distinct numbers 0-7, got {self.isometries!r}")
        if not isinstance(self.s_max, float) or not 0.0 < self.s_max < 1.0:
            raise ConfigurationError(f"s_max must lie in (0, 1) for a contraction, got {self.s_max!r}")
        if not is_int(self.aux) or not 0 <= self.aux <= MAX_AUX:
            raise ConfigurationError(f"the number of auxiliary patches must lie in [0, {MAX_AUX}], got {self.aux!r}")
        if self.channel_maps not in CHANNEL_MAPS:
            raise ConfigurationError(f"channel maps must be one of {CHANNEL_MAPS}, got {self.channel_maps!r}")
        if not is_int(self.decode_steps) or not 1 <= self.decode_steps <= MAX_DECODE_STEPS:
            raise ConfigurationError(f"decode steps must lie in [1, {MAX_DECODE_STEPS}], got {self.decode_steps!r}")

    def operator(self, channels: int) -> CollageOperator:
        """The collage operator of this code (the whole padded image is the only domain)."""
        return CollageOperator(
            self.padded, channels=channels, range_size=self.range_size, domain_size=self.padded,
            isometries=[ISOMETRY_NAMES[i] for i in self.isometries], aux_patches=self.aux,
            channel_maps=self.channel_maps, s_max=self.s_max,
        )

    def to_params(self) -> dict:
        return {
            "v": PAYLOAD_VERSION,
            "padded": list(self.padded),
            "range": self.range_size,
            "isometries": list(self.isometries),
            "s_max": self.s_max,
            "aux": self.aux,
            "maps": self.channel_maps,
            "steps": self.decode_steps,
        }

    @classmethod
    def from_params(cls, params: dict) -> "ArtConfig":
        """Validate a file's params (hostile input): :class:`FormatError` on anything unexpected."""
        expected = {"v", "padded", "range", "isometries", "s_max", "aux", "maps", "steps"}
        if set(params) != expected:
            raise FormatError(f"fractal-art params must have exactly the keys {sorted(expected)}")
        if type(params["v"]) is not int or params["v"] != PAYLOAD_VERSION:  # not true or 1.0: one spelling per file
            raise FormatError(f"unsupported fractal-art payload version {params['v']!r}")
        padded, isos = params["padded"], params["isometries"]
        if not (isinstance(padded, list) and len(padded) == 2 and all(type(v) is int for v in padded)):
            raise FormatError("fractal-art param padded must be two integers")
        if not (isinstance(isos, list) and all(type(v) is int for v in isos)):
            raise FormatError("fractal-art param isometries must be a list of integers")
        if type(params["s_max"]) is not float or not all(type(params[k]) is int for k in ("range", "aux", "steps")):
            raise FormatError("fractal-art params range, aux and steps must be integers and s_max a float")
        try:
            return cls(tuple(padded), params["range"], tuple(isos), params["s_max"], params["aux"], params["maps"],
                       params["steps"])
        except ConfigurationError as exc:
            raise FormatError(f"invalid fractal-art params: {exc}") from None
