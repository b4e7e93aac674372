"""The amortised IFS encoder: a point-cloud network that predicts an IFS in one forward pass.

The "Neural" of Neural Collages for sets: instead of searching for the maps of every cloud
(``fit.py``, tens of seconds), a PointNet-style network — a per-point MLP, max- and mean-pooled
into one feature, then an MLP head — outputs the unconstrained parameters of ``N`` maps, turned
into contractive maps by the same parametrisation as :class:`~neural_collages.ifs.model.IFS`
(so every prediction has an attractor). It sees clouds normalised to the unit box and was
trained (``training/ifs_encoder.py``) on attractors of random contractive IFS, minimising the
collage loss of its prediction — the amortised version of the fitting objective, which needs no
ground-truth maps and is blind to the order of the maps.

Encoders are saved as safetensors (kind ``neural-collages/ifs-encoder``, config in the metadata,
validated like every model file). Shipped ones are named ``ifs-<d>d-<N>maps``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..assets import model_dir
from ..checks import is_int
from ..errors import ConfigurationError, FormatError
from ..models.model_files import load_state, read_safetensors, write_safetensors
from .model import check_dimension, check_num_maps, check_s_max, maps_from_parameters, num_map_parameters

ENCODER_KIND = "neural-collages/ifs-encoder"
#: Points the encoder reads from a cloud (a random subsample of the normalised cloud).
INPUT_POINTS = 1024


@dataclass(frozen=True)
class EncoderConfig:
    dim: int = 2
    num_maps: int = 4
    width: int = 128
    s_max: float = 0.95

    def __post_init__(self):
        check_dimension(self.dim)
        check_num_maps(self.num_maps)
        check_s_max(self.s_max)
        if not is_int(self.width) or not 8 <= self.width <= 1024:
            raise ConfigurationError(f"width must be an integer in 8..1024, got {self.width!r}")

    @classmethod
    def from_dict(cls, d) -> "EncoderConfig":
        if not isinstance(d, dict) or set(d) - {"dim", "num_maps", "width", "s_max"}:
            raise ConfigurationError(f"an encoder config is an object with dim, num_maps, width, s_max; got {d!r}")
        return cls(**d)


class IFSEncoder(nn.Module):
    """Points ``(B, m, d)`` in the unit box → contractive maps ``A (B, N, d, d)``, ``t (B, N, d)``."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        d, w, n = config.dim, config.width, config.num_maps
        self.k = num_map_parameters(d)
        self.points = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, w), nn.ReLU(), nn.Linear(w, 2 * w))
        self.head = nn.Sequential(nn.Linear(4 * w, 2 * w), nn.ReLU(), nn.Linear(2 * w, 2 * w), nn.ReLU(),
                                  nn.Linear(2 * w, n * self.k))
        with torch.no_grad():  # start near "N maps of size 0.5 spread over the box", not at random maps
            last = self.head[-1]
            last.weight.mul_(0.1)
            bias = torch.zeros(n, self.k)
            sk = (self.k - 2 * d) // 2
            bias[:, 2 * sk : 2 * sk + d] = float(torch.atanh(torch.tensor(0.5 / config.s_max)))
            bias[:, 2 * sk + d :] = torch.rand(n, d, generator=torch.Generator().manual_seed(0)) * 0.5
            last.bias.copy_(bias.reshape(-1))

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if points.dim() != 3 or points.shape[-1] != self.config.dim:
            raise ConfigurationError(f"the encoder takes points (B, m, {self.config.dim}), got {tuple(points.shape)}")
        f = self.points(points)  # (B, m, 2w)
        pooled = torch.cat([f.amax(1), f.mean(1)], -1)
        params = self.head(pooled).reshape(points.shape[0], self.config.num_maps, self.k)
        return maps_from_parameters(params, self.config.dim, self.config.s_max)


def save_encoder(encoder: IFSEncoder, path: Path, info: dict | None = None) -> None:
    tensors = {k: v.detach().float() for k, v in encoder.state_dict().items()}
    metadata = {"kind": ENCODER_KIND, "config": json.dumps(asdict(encoder.config)), "info": json.dumps(info or {})}
    write_safetensors(tensors, Path(path), metadata)


def load_encoder(path: Path) -> tuple[IFSEncoder, dict]:
    """An encoder (eval mode) and its info from a file written by :func:`save_encoder` (hostile input)."""
    tensors, metadata = read_safetensors(Path(path), ENCODER_KIND)
    try:
        config = EncoderConfig.from_dict(json.loads(metadata["config"]))
        info = json.loads(metadata.get("info", "{}"))
    except (KeyError, TypeError, ValueError, ConfigurationError) as exc:
        raise FormatError(f"{path}: bad encoder config ({exc})") from None
    encoder = IFSEncoder(config)
    load_state(encoder, tensors, path)
    return encoder.eval(), info if isinstance(info, dict) else {}


def shipped_encoder_name(dim: int, num_maps: int) -> str:
    return f"ifs-{dim}d-{num_maps}maps"


def find_encoder(spec: str | Path | None, dim: int, num_maps: int) -> Path:
    """The file of an encoder: a path, a shipped name, or (``None``) the shipped one for ``dim``/``num_maps``."""
    name = shipped_encoder_name(dim, num_maps) if spec is None else str(spec)
    path = Path(name)
    if path.suffix == ".safetensors" or path.exists():
        return path
    shipped = model_dir() / f"{name}.safetensors"
    if not shipped.is_file():
        have = sorted(p.stem for p in model_dir().glob("ifs-*.safetensors"))
        raise ConfigurationError(f"no IFS encoder {name!r}; shipped ones: {', '.join(have) or 'none'}")
    return shipped


def predict_maps(encoder: IFSEncoder, x_unit: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's maps ``(A (N, d, d), t (N, d))`` float64 for one normalised cloud ``(M, d)``."""
    cfg = encoder.config
    if x_unit.dim() != 2 or x_unit.shape[1] != cfg.dim:
        raise ConfigurationError(f"this encoder reads {cfg.dim}-D clouds, got points of shape {tuple(x_unit.shape)}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(x_unit), (INPUT_POINTS,), generator=g)
    with torch.no_grad():
        A, t = encoder(x_unit[idx].float().unsqueeze(0))
    return A[0].double(), t[0].double()
