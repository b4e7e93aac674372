"""Hyper-parameters of a Neural Collage codec model, validated, stored with its weights."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ...errors import ConfigurationError

#: Range cell size of both planes' operators (luma at full, chroma at half resolution).
RANGE = 8
#: Bounds of the integer hyper-parameters: generous for research, small enough to build quickly.
_INT_BOUNDS = (
    ("crop", 2 * RANGE, 256),
    ("width", 1, 1024),
    ("blocks", 0, 64),
    ("coef_bound", 1, 1000),
    ("aux_count", 0, RANGE * RANGE - 1),
    ("domain_steps", 1, 64),
    ("train_decode_steps", 1, 64),
)


@dataclass(frozen=True)
class NeuralCodecConfig:
    """Hyper-parameters of a Neural Collage codec model (stored with its weights)."""

    crop: int = 32
    width: int = 128
    blocks: int = 2
    coef_bound: int = 63  # coefficients are integers in [-coef_bound, coef_bound]
    aux_count: int = 63  # learned auxiliary patches per plane kind (initialised to the lowest DCT atoms)
    mean_step: float = 2.0  # quantisation step of range means, 8-bit units
    aux_amplitude: float = 0.04  # initial amplitude of the DCT-initialised auxiliary patches
    s_max: float = 0.95  # L1 radius of every range's domain weights (the classic |s| < 1)
    domain_steps: int = 8  # quantisation steps of a domain weight per unit of s_max
    train_decode_steps: int = 8
    # Give the encoder, per range, the exact best domain of its crop (closed-form least squares
    # over the crop's few domain candidates, clamped to s_max): its scale is added to that
    # candidate's output and its fit enters the heads. Without it the domain weights never leave
    # zero in training (the learned prior collapses them first; measured).
    search_hint: bool = False
    # Condition each range's coefficient tables on the nonzero counts of the ranges above it
    # (NUM_CONTEXTS table sets): measured on shipped codes, 10% fewer luma coefficient bits.
    context: bool = False
    # Condition the mean residuals' tables on the activity of the decoded row above
    # (NUM_MEAN_CONTEXTS classes per plane): measured on Kodak, 8.6 % fewer mean bits.
    mean_context: bool = False
    # Rounding dead zone the encoder uses (``quantise``); a per-model choice made after training:
    # photo models 0.2 (BD-rate −5.3 % vs nearest on six Kodak images, benchmarks/neural_deadzone.py),
    # aerial models 0
    # (on held-out forest tiles any dead zone lost: textures need their small coefficients).
    encoder_deadzone: float = 0.0
    # Chroma at half resolution (4:2:0) or full resolution (4:4:4); measured in docs/neural.md.
    chroma_subsampling: bool = True
    lam: float = 0.004  # rate-distortion trade-off the model was trained for: bpp + lam * MSE(8-bit)

    def __post_init__(self):
        # Types first (a config may come from a hostile file), then bounds that keep the network
        # and its tables small enough to build in seconds: width 1e6 or blocks 1e5 would allocate
        # gigabytes before failing (measured).
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (type(value) is not int):
                raise ConfigurationError(f"{f.name} must be an integer, got {value!r}")
            if f.type in ("float", float):
                if type(value) not in (int, float) or not math.isfinite(value):
                    raise ConfigurationError(f"{f.name} must be a finite number, got {value!r}")
                object.__setattr__(self, f.name, float(value))
            if f.type in ("bool", bool) and type(value) is not bool:
                raise ConfigurationError(f"{f.name} must be true or false, got {value!r}")
        for name, low, high in _INT_BOUNDS:
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigurationError(f"{name} must lie in [{low}, {high}], got {value}")
        if self.crop % (2 * RANGE):
            raise ConfigurationError(f"crop must be a positive multiple of {2 * RANGE}, got {self.crop}")
        if not 0.25 <= self.mean_step <= 64:
            raise ConfigurationError(f"mean_step must lie in [0.25, 64], got {self.mean_step}")
        if not 0 < self.s_max < 1:
            raise ConfigurationError(f"s_max must lie in (0, 1), got {self.s_max}")
        if not 0.0 <= self.encoder_deadzone < 0.5:
            raise ConfigurationError(f"encoder_deadzone must lie in [0, 0.5), got {self.encoder_deadzone}")
        if not 0 < self.lam <= 1e3 or not 0 <= self.aux_amplitude <= 1:
            raise ConfigurationError("lam must lie in (0, 1000] and aux_amplitude in [0, 1]")

    @property
    def mean_levels(self) -> int:
        """Largest mean index: means are ``index · mean_step`` in ``[0, 255]``."""
        return int(round(255.0 / self.mean_step))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NeuralCodecConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigurationError(f"unknown codec config keys: {sorted(unknown)}")
        return cls(**data)

    @property
    def domain_unit(self) -> float:
        """The weight of one integer step of a domain coefficient."""
        return self.s_max / self.domain_steps
