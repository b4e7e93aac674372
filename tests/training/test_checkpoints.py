"""Checkpoints are hostile input too: crafted metadata gives a FormatError, never a traceback."""

import json

import pytest
import torch
from safetensors.torch import save_file

from neural_collages.errors import FormatError
from neural_collages.models.model_files import CHECKPOINT_KIND
from neural_collages.models.neural_collage import NeuralCodecConfig, NeuralCollageCodec
from neural_collages.training.checkpoints import load_checkpoint, load_optimizer, save_checkpoint


@pytest.fixture
def model():
    torch.manual_seed(0)
    return NeuralCollageCodec(NeuralCodecConfig(width=8, blocks=1))


def _checkpoint(tmp_path, model, **metadata):
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    tensors["sampler_state"] = torch.zeros(8, dtype=torch.uint8)
    meta = {"kind": CHECKPOINT_KIND, "config": json.dumps(model.config.to_dict()), "step": "3", "options": "{}"}
    meta.update(metadata)
    path = tmp_path / "crafted.safetensors"
    save_file(tensors, str(path), metadata=meta)
    return path


def test_checkpoint_round_trip_restores_model_optimizer_and_step(tmp_path, model):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(2, 3, 32, 32))["bpp"].backward()
    opt.step()
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, model, opt, 7, torch.arange(4, dtype=torch.uint8), {"lam": 0.01})
    loaded = load_checkpoint(path)
    assert loaded.step == 7 and loaded.options == {"lam": 0.01}
    for (name, a), b in zip(model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
    fresh = torch.optim.Adam(loaded.model.parameters(), lr=1e-3)
    load_optimizer(fresh, loaded.tensors)
    saved, restored = opt.state_dict()["state"], fresh.state_dict()["state"]
    assert saved and saved.keys() == restored.keys()
    for i in saved:
        assert torch.equal(saved[i]["exp_avg"], restored[i]["exp_avg"]), i


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"step": "abc"}, "bad step"),
        ({"step": "-1"}, "bad step"),
        ({"options": "{not json"}, "not JSON"),
        ({"options": "[1, 2]"}, "JSON object"),
        ({"config": "{\"width\": \"wide\"}"}, "bad model config"),
        ({"kind": "neural-collages/model"}, "not a neural-collages/checkpoint file"),
    ],
)
def test_crafted_checkpoint_metadata_is_a_format_error(tmp_path, model, metadata, message):
    with pytest.raises(FormatError, match=message):
        load_checkpoint(_checkpoint(tmp_path, model, **metadata))
