"""Hyper-parameters of a (Collage) VAE, validated, stored with its weights."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..errors import ConfigurationError

DECODERS = ("collage", "pixel")
AUX_MODES = ("none", "global", "per_sample")
#: Digits are 28×28; the top-down network ends at 14×14, one position per 2×2 range cell.
IMAGE_SIZE = 28
RANGE_SIZE = 2
#: Resolutions of the encoder (bottom-up) and of the top-down network's latent groups.
ENCODER_RESOLUTIONS = (28, 14, 7, 1)
TOPDOWN_RESOLUTIONS = (1, 7, 14)
#: Bounds that keep a network built from a hostile file small (width 1e6 would allocate GBs).
_INT_BOUNDS = (("width", 8, 512), ("bottleneck", 4, 512), ("zdim", 1, 64), ("aux_count", 0, 64),
               ("decode_steps", 1, 64))
_BLOCK_BOUNDS = (0, 16)


@dataclass(frozen=True)
class VAEConfig:
    """A top-down hierarchical VAE for 28×28 binary digits (stored with its weights).

    ``encoder_blocks[i]`` residual blocks run at ``ENCODER_RESOLUTIONS[i]``; ``topdown_blocks[i]``
    latent groups (each ``zdim`` channels per position) at ``TOPDOWN_RESOLUTIONS[i]``.
    """

    decoder: str = "collage"
    width: int = 64
    bottleneck: int = 16
    zdim: int = 8
    encoder_blocks: tuple = (1, 2, 2, 2)
    topdown_blocks: tuple = (2, 3, 3)
    # Collage head: domain cells (size, stride) of the operator on the 28×28 fixed point, pooled
    # to the 2×2 ranges; 4×4 cells are the classic 2:1 domains, 8×8 ones reach further.
    domains: tuple = ((4, 4), (8, 4))
    aux: str = "global"
    aux_count: int = 4
    s_max: float = 0.5  # L1 bound of a range's domain weights: 16 steps reach 0.5^16 ≈ 1.5e-5
    decode_steps: int = 16
    gain_init: float = 8.0  # the fixed point z becomes the logit gain · (z − ½)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and type(value) is not int:
                raise ConfigurationError(f"{f.name} must be an integer, got {value!r}")
            if f.type in ("float", float):
                if type(value) not in (int, float) or not math.isfinite(value):
                    raise ConfigurationError(f"{f.name} must be a finite number, got {value!r}")
                object.__setattr__(self, f.name, float(value))
        for name, low, high in _INT_BOUNDS:
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigurationError(f"{name} must lie in [{low}, {high}], got {value}")
        if self.decoder not in DECODERS:
            raise ConfigurationError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.aux not in AUX_MODES:
            raise ConfigurationError(f"aux must be one of {AUX_MODES}, got {self.aux!r}")
        for name, expected in (("encoder_blocks", ENCODER_RESOLUTIONS), ("topdown_blocks", TOPDOWN_RESOLUTIONS)):
            blocks = tuple(getattr(self, name)) if isinstance(getattr(self, name), (list, tuple)) else None
            if blocks is None or len(blocks) != len(expected) or not all(
                    type(b) is int and _BLOCK_BOUNDS[0] <= b <= _BLOCK_BOUNDS[1] for b in blocks):
                raise ConfigurationError(f"{name} must be {len(expected)} integers in {list(_BLOCK_BOUNDS)}, "
                                         f"got {getattr(self, name)!r}")
            object.__setattr__(self, name, blocks)
        if sum(self.topdown_blocks) < 1:
            raise ConfigurationError("topdown_blocks must hold at least one latent group")
        domains = self.domains
        if not isinstance(domains, (list, tuple)) or len(domains) > 4 or not all(
                isinstance(d, (list, tuple)) and len(d) == 2 and all(type(v) is int for v in d) for d in domains):
            raise ConfigurationError(f"domains must be up to 4 (size, stride) pairs of integers, got {domains!r}")
        domains = tuple(tuple(d) for d in domains)
        for size, stride in domains:
            if size % RANGE_SIZE or not RANGE_SIZE <= size <= IMAGE_SIZE or not 1 <= stride <= IMAGE_SIZE:
                raise ConfigurationError(f"domain size {size} must be a multiple of {RANGE_SIZE} in "
                                         f"[{RANGE_SIZE}, {IMAGE_SIZE}] with a stride in [1, {IMAGE_SIZE}]")
        object.__setattr__(self, "domains", domains)
        if self.decoder == "collage" and not domains and self.aux == "none":
            raise ConfigurationError("a collage decoder needs domains or auxiliary patches")
        if not 0.0 < self.s_max < 1.0:
            raise ConfigurationError(f"s_max must lie in (0, 1), got {self.s_max}")
        if not 0.0 < self.gain_init <= 100.0:
            raise ConfigurationError(f"gain_init must lie in (0, 100], got {self.gain_init}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data) -> "VAEConfig":
        if not isinstance(data, dict):
            raise ConfigurationError(f"a VAE config is a JSON object, got {type(data).__name__}")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigurationError(f"unknown VAE config keys: {sorted(unknown)}")
        return cls(**data)
