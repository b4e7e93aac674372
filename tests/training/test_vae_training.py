"""VAE training: the loss falls, a resumed run takes the same steps, hostile checkpoints are refused."""

import json
import sys
from pathlib import Path

import pytest
import torch

from neural_collages.errors import FormatError
from neural_collages.models.model_files import read_safetensors, write_safetensors
from neural_collages.training.vae import (CHECKPOINT_KIND, VAETrainOptions, load_vae_checkpoint,
                                          mean_negative_elbo, train_vae)
from neural_collages.vae import VAEConfig
from neural_collages.vae.files import load_vae

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vae"))
from vae_helpers import TINY  # noqa: E402


def _strokes(n: int, seed: int = 0) -> torch.Tensor:
    """Grey 'digits': one bright bar each, at a random place (uint8, like MNIST)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    for i in range(n):
        r, c = (int(v) for v in torch.randint(4, 20, (2,), generator=g))
        if i % 2:
            x[i, 0, r : r + 8, c : c + 3] = 255
        else:
            x[i, 0, r : r + 3, c : c + 8] = 255
    return x


def _options(out, **kw):
    return VAETrainOptions(data=None, out=out, batch=16, lr=3e-3, warmup=5, eval_digits=0, progress=False, **kw)


@pytest.mark.parametrize("decoder", ["collage", "pixel"])
def test_a_few_training_steps_lower_the_loss(tmp_path, decoder):
    digits = _strokes(64)
    config = VAEConfig(decoder=decoder, **TINY)
    torch.manual_seed(0)
    from neural_collages.vae import HierarchicalVAE

    fixed = torch.bernoulli(digits.float() / 255, generator=torch.Generator().manual_seed(1))
    before = mean_negative_elbo(HierarchicalVAE(config), fixed)
    summary = train_vae(_options(tmp_path, steps=40), config, digits, log=lambda *_: None)
    model, info = load_vae(tmp_path / "model.safetensors")
    assert summary["steps"] == 40 and info["steps"] == 40
    after = mean_negative_elbo(load_vae_checkpoint(tmp_path / "checkpoint.safetensors").model, fixed)
    assert after < before - 10  # nats per digit: measured ~20 (collage) and more (pixel) after 40 steps


def test_a_resumed_run_takes_the_same_steps_as_an_uninterrupted_one(tmp_path):
    digits = _strokes(64)
    config = VAEConfig(**TINY)
    train_vae(_options(tmp_path / "whole", steps=6), config, digits)
    train_vae(_options(tmp_path / "parts", steps=3), config, digits)
    train_vae(_options(tmp_path / "parts", steps=6, resume=True), config, digits, log=lambda *_: None)
    whole = load_vae_checkpoint(tmp_path / "whole" / "checkpoint.safetensors")
    parts = load_vae_checkpoint(tmp_path / "parts" / "checkpoint.safetensors")
    assert whole.step == parts.step == 6
    for (name, a), b in zip(whole.model.state_dict().items(), parts.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(whole.ema.state_dict().values(), parts.ema.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.bernoulli(digits[:8].float() / 255, generator=torch.Generator().manual_seed(2))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    with torch.no_grad():
        assert float(whole.model(x, g1)["loss"]) == float(parts.model(x, g2)["loss"])


def test_hostile_checkpoints_are_refused_with_a_format_error(tmp_path):
    train_vae(_options(tmp_path, steps=1), VAEConfig(**TINY), _strokes(16))
    path = tmp_path / "checkpoint.safetensors"
    tensors, metadata = read_safetensors(path, CHECKPOINT_KIND)
    cases = {
        "step": {**metadata, "step": "abc"},
        "options": {**metadata, "options": "{not json"},
        "options_list": {**metadata, "options": "[1, 2]"},
        "config": {**metadata, "config": json.dumps({"blocks": 100000})},
        "width": {**metadata, "config": json.dumps({**json.loads(metadata["config"]), "width": 10**6})},
    }
    for name, meta in cases.items():
        bad = tmp_path / f"{name}.safetensors"
        write_safetensors(tensors, bad, meta)
        with pytest.raises(FormatError):
            load_vae_checkpoint(bad)
    bad = tmp_path / "no_state.safetensors"
    write_safetensors({k: v for k, v in tensors.items() if k != "generator_state"}, bad, metadata)
    with pytest.raises(FormatError, match="generator_state"):
        load_vae_checkpoint(bad)
    bad = tmp_path / "float_state.safetensors"
    write_safetensors({**tensors, "generator_state": torch.zeros(10)}, bad, metadata)
    with pytest.raises(FormatError, match="generator_state"):
        load_vae_checkpoint(bad)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(FormatError):
        load_vae_checkpoint(truncated)
