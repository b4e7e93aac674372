"""VAE weight files: safetensors with a ``kind`` and the config in the metadata; shipped models by name.

A model file holds the evaluation weights (the EMA of training) in float32. It is read like
every model file of the project (size first, then names, shapes, dtypes and finiteness against
the network built from the validated config). MODEL arguments name a run directory (its
``model.safetensors``), a file, or a shipped model: ``mnist-collage`` (the Collage VAE) and
``mnist-plain`` (its pixel-decoder baseline).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..assets import model_dir
from ..errors import ConfigurationError, FormatError
from ..models.model_files import load_state, read_safetensors, write_safetensors
from .config import VAEConfig
from .model import HierarchicalVAE

VAE_MODEL_KIND = "neural-collages/vae-model"
SHIPPED = ("mnist-collage", "mnist-plain")
MODEL_FILE = "model.safetensors"


def config_from_metadata(path, metadata: dict) -> VAEConfig:
    try:
        return VAEConfig.from_dict(json.loads(metadata["config"]))
    except (KeyError, TypeError, json.JSONDecodeError, ConfigurationError) as exc:
        raise FormatError(f"{path}: bad VAE config ({exc})") from None


def save_vae(model: HierarchicalVAE, path: Path, info: dict | None = None) -> None:
    """Write ``model``'s weights (float32) atomically."""
    tensors = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    metadata = {"kind": VAE_MODEL_KIND, "config": json.dumps(model.config.to_dict()), "info": json.dumps(info or {})}
    write_safetensors(tensors, Path(path), metadata)


def load_vae(path: Path) -> tuple[HierarchicalVAE, dict]:
    """A model (eval mode) and its info from a file written by :func:`save_vae`."""
    tensors, metadata = read_safetensors(path, VAE_MODEL_KIND)
    model = HierarchicalVAE(config_from_metadata(path, metadata))
    load_state(model, tensors, path)
    try:
        info = json.loads(metadata.get("info", "{}"))
    except json.JSONDecodeError:
        info = {}
    return model.eval(), info if isinstance(info, dict) else {}


def find_vae(spec: str | Path) -> Path:
    """The weights file a MODEL argument names (a shipped name, a run directory or a file)."""
    text = str(spec)
    if text in SHIPPED:
        path = model_dir() / f"{text}.safetensors"
        if not path.is_file():
            raise ConfigurationError(f"model {text!r} is not shipped with this build ({path} missing)")
        return path
    path = Path(spec)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise FormatError(f"{path}: no {MODEL_FILE} in this run directory (training writes it at the end)")
        return path / MODEL_FILE
    if path.is_file():
        return path
    raise ConfigurationError(f"{spec}: not a file, a run directory or a shipped model ({', '.join(SHIPPED)})")
