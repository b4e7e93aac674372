"""Training checkpoints: model, Adam state (flattened to tensors), sampler RNG state, step and options.

Safetensors files read through :mod:`neural_collages.models.model_files` (same size, name,
shape and finiteness checks); the step and options in the metadata are validated too, since a
checkpoint passed to ``--resume`` or ``--init`` is as hostile as any other input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import FormatError
from ..models.model_files import CHECKPOINT_KIND, config_from_metadata, load_state, read_safetensors, write_safetensors
from ..models.neural_collage import NeuralCollageCodec


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read: the model, every tensor of the file, the step and the options."""

    model: NeuralCollageCodec
    tensors: dict[str, torch.Tensor]
    step: int
    options: dict


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimiser's per-parameter state as named tensors (``optim.<param>.<key>``)."""
    tensors = {}
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{i}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return tensors


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Restore the state written by :func:`optimizer_tensors` into ``opt``."""
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, i, key = name.split(".", 2)
            state.setdefault(int(i), {})[key] = value
    sd["state"] = state
    opt.load_state_dict(sd)


def save_checkpoint(path: Path, model: NeuralCollageCodec, opt, step: int, sampler_state: torch.Tensor,
                    options: dict) -> None:
    """Write a checkpoint atomically."""
    tensors = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    tensors.update({k: v.cpu() for k, v in optimizer_tensors(opt).items()})
    tensors["sampler_state"] = sampler_state
    metadata = {"kind": CHECKPOINT_KIND, "config": json.dumps(model.config.to_dict()), "step": str(step),
                "options": json.dumps(options)}
    write_safetensors(tensors, Path(path), metadata)


def metadata_count(path, metadata: dict, key: str) -> int:
    """A non-negative integer stored as text in a checkpoint's metadata (``0`` if absent)."""
    value = metadata.get(key, "0")
    if not (isinstance(value, str) and value.isdigit() and len(value) <= 12):
        raise FormatError(f"{path}: bad {key} {value!r} in the checkpoint metadata")
    return int(value)


def metadata_options(path, metadata: dict) -> dict:
    """The JSON object of training options in a checkpoint's metadata (``{}`` if absent)."""
    try:
        options = json.loads(metadata.get("options", "{}"))
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: options in the checkpoint metadata are not JSON ({exc})") from None
    if not isinstance(options, dict):
        raise FormatError(f"{path}: options in the checkpoint metadata must be a JSON object")
    return options


def load_checkpoint(path: Path) -> Checkpoint:
    """Read and check a checkpoint written by :func:`save_checkpoint`."""
    tensors, metadata = read_safetensors(path, CHECKPOINT_KIND)
    model = NeuralCollageCodec(config_from_metadata(path, metadata))
    load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    step = metadata_count(path, metadata, "step")
    options = metadata_options(path, metadata)
    if "sampler_state" not in tensors:
        raise FormatError(f"{path}: no sampler_state tensor")
    return Checkpoint(model, tensors, step, options)
