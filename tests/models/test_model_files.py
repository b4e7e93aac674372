"""Model files are hostile input: names, shapes, dtypes, finiteness and tables are checked."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from neural_collages.errors import FormatError
from neural_collages.models.model_files import export_model, load_model
from neural_collages.models.neural_collage import NeuralCodecConfig, NeuralCollageCodec


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.safetensors"
    export_model(NeuralCollageCodec(NeuralCodecConfig(width=8, blocks=1)), path, {"note": "tiny"})
    return path


def _rewrite(path, tmp_path, change):
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    change(tensors)
    out = tmp_path / "crafted.safetensors"
    save_file(tensors, str(out), metadata=metadata)
    return out


def test_export_and_load_round_trip(exported):
    loaded = load_model(exported)
    assert loaded.info == {"note": "tiny"} and not loaded.model.training
    assert loaded.coef_counts.sum(axis=1).tolist() == [65536] * loaded.coef_counts.shape[0]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.update({"encoder.embed.weight": t["encoder.embed.weight"].to(torch.int32)}), "dtype"),
        (lambda t: t.update({"tables.coef": t["tables.coef"].to(torch.float32)}), "int32"),
        (lambda t: t.update({"encoder.embed.bias": torch.full_like(t["encoder.embed.bias"], float("nan"))}),
         "non-finite"),
        (lambda t: t.pop("tables.mean"), "tables"),
        (lambda t: t.update({"encoder.embed.bias": t["encoder.embed.bias"][:-1]}), "shape"),
    ],
)
def test_crafted_model_files_are_format_errors(exported, tmp_path, change, message):
    with pytest.raises(FormatError, match=message):
        load_model(_rewrite(exported, tmp_path, change))
