"""Model and checkpoint files: safetensors with a ``kind`` and a JSON config in the metadata.

Read with the size checked first, every tensor's name, shape and finiteness checked against the
model, and the config validated before the network is built — a file is hostile input. Written
atomically. Never pickles. Training checkpoints (``training/checkpoints.py``) use the same
reader; inference reads model files through this module only, so it never imports training code.

A model file (:func:`export_model`) holds what the codec needs: the encoder in float16, the
auxiliary patches in float32 and the entropy model as integer tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError

from ..errors import ConfigurationError, FormatError
from ..imaging.atomic import atomic_write_bytes
from .neural_collage import NeuralCodecConfig, NeuralCollageCodec

CHECKPOINT_KIND = "neural-collages/checkpoint"
MODEL_KIND = "neural-collages/model"
#: Largest model or checkpoint file read (a checkpoint with Adam state is ~9 MB; models ~2 MB).
MAX_FILE_BYTES = 512 * 2**20


@dataclass
class ModelFile:
    """A model file's contents: the network (eval mode), its integer entropy tables, and free-form info."""

    model: NeuralCollageCodec
    coef_counts: np.ndarray  # (T, K) int64
    mean_counts: np.ndarray  # (T, K) int64
    info: dict


def write_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write ``tensors`` with ``metadata`` atomically (replacing ``path``; parent folders are created)."""
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata), force=True)


def read_safetensors(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a safetensors file whose metadata ``kind`` is ``kind`` (FormatError otherwise)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise FormatError(f"{path}: too large for a model or checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("kind") != kind:
                raise FormatError(f"{path}: not a {kind} file (kind {metadata.get('kind')!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise FormatError(f"{path}: unreadable safetensors file ({exc})") from None
    return tensors, metadata


def config_from_metadata(path, metadata: dict) -> NeuralCodecConfig:
    """The validated model config stored in a file's metadata (FormatError if absent or invalid)."""
    try:
        return NeuralCodecConfig.from_dict(json.loads(metadata["config"]))
    except (KeyError, TypeError, json.JSONDecodeError, ConfigurationError) as exc:
        raise FormatError(f"{path}: bad model config ({exc})") from None


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path, names=None) -> None:
    """Load ``state`` into ``model`` after checking names, shapes and finiteness (``FormatError``).

    ``names`` (default: all of the model's tensors) are the tensors the file must hold exactly;
    the others keep their values.
    """
    full = model.state_dict()
    expected = full if names is None else {k: full[k] for k in names}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise FormatError(f"{path}: tensors do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise FormatError(f"{path}: tensor {name} has shape {tuple(tensor.shape)}, "
                              f"the model needs {tuple(expected[name].shape)}")
        if not tensor.is_floating_point():
            raise FormatError(f"{path}: tensor {name} has dtype {tensor.dtype}, the model needs floating point")
        if not torch.isfinite(tensor.float()).all():
            raise FormatError(f"{path}: tensor {name} holds non-finite values")
    model.load_state_dict({**full, **{k: v.to(expected[k].dtype) for k, v in state.items()}})


def export_model(model: NeuralCollageCodec, path: Path, info: dict | None = None) -> None:
    """Write the codec's model file: float16 encoder, float32 patches, integer entropy tables."""
    coef, mean = model.integer_tables()
    tensors = {}
    for name, value in model.state_dict().items():
        if name.startswith("encoder."):
            tensors[name] = value.detach().to(torch.float16)
        elif name.endswith("aux_patches"):
            tensors[name] = value.detach().float()
    tensors["tables.coef"] = torch.from_numpy(coef.astype(np.int32))
    tensors["tables.mean"] = torch.from_numpy(mean.astype(np.int32))
    metadata = {"kind": MODEL_KIND, "config": json.dumps(model.config.to_dict()), "info": json.dumps(info or {})}
    write_safetensors(tensors, Path(path), metadata)


def load_model(path: Path) -> ModelFile:
    """Load a model file written by :func:`export_model`."""
    tensors, metadata = read_safetensors(path, MODEL_KIND)
    model = NeuralCollageCodec(config_from_metadata(path, metadata))
    state = {k: v for k, v in tensors.items() if not k.startswith("tables.")}
    names = [k for k in model.state_dict() if k.startswith("encoder.") or k.endswith("aux_patches")]
    load_state(model, state, path, names)
    coef = tensors.get("tables.coef")
    mean = tensors.get("tables.mean")
    K = model.coef_prior.num_symbols
    if coef is not None and coef.dtype != torch.int32 or mean is not None and mean.dtype != torch.int32:
        raise FormatError(f"{path}: entropy tables must be int32")
    if coef is None or mean is None or tuple(coef.shape) != (model.coef_prior.mix_logit.shape[0], K) \
            or tuple(mean.shape) != (model.mean_prior.mix_logit.shape[0], model.mean_prior.num_symbols):
        raise FormatError(f"{path}: entropy tables missing or of the wrong shape")
    try:
        info = json.loads(metadata.get("info", "{}"))
    except json.JSONDecodeError:
        info = {}
    return ModelFile(model.eval(), coef.numpy().astype(np.int64), mean.numpy().astype(np.int64), info)
