"""The amortised IFS encoder: contractive predictions, file round trips, shipped weights, hostile files."""

import time

import pytest
import torch

from neural_collages.assets import model_dir
from neural_collages.errors import ConfigurationError, FormatError
from neural_collages.ifs.encoder import (EncoderConfig, IFSEncoder, find_encoder, load_encoder, predict_maps,
                                         save_encoder)
from neural_collages.ifs.fit import FitOptions, Normalisation, amortised_fit
from neural_collages.ifs.gallery import SIERPINSKI, TETRAHEDRON, sample
from neural_collages.ifs.model import largest_singular_values
from neural_collages.models.model_files import write_safetensors
from neural_collages.training.ifs_encoder import collage_chamfer, random_clouds, train_encoder

SHIPPED = ["ifs-2d-3maps", "ifs-2d-4maps", "ifs-3d-4maps"]


@pytest.mark.parametrize("dim", [2, 3])
def test_predictions_are_contractive_and_the_file_round_trips(tmp_path, dim):
    torch.manual_seed(0)
    encoder = IFSEncoder(EncoderConfig(dim, 3, width=16, s_max=0.8))
    with torch.no_grad():
        for p in encoder.parameters():
            p.mul_(50)  # whatever the weights, the maps are contractive
    x = torch.rand(2, 100, dim)
    A, t = encoder(x)
    assert A.shape == (2, 3, dim, dim) and t.shape == (2, 3, dim)
    assert float(largest_singular_values(A).max()) <= 0.8 + 1e-5
    path = tmp_path / "e.safetensors"
    save_encoder(encoder, path, {"steps": 1})
    loaded, info = load_encoder(path)
    assert info == {"steps": 1} and loaded.config == encoder.config
    A2, t2 = loaded(x)
    torch.testing.assert_close(A2, A) and torch.testing.assert_close(t2, t)


def test_hostile_encoder_files(tmp_path):
    encoder = IFSEncoder(EncoderConfig(2, 3, width=16))
    state = {k: v.detach() for k, v in encoder.state_dict().items()}
    cases = {
        "kind": ({"kind": "neural-collages/model", "config": "{}"}, state),
        "config": ({"kind": "neural-collages/ifs-encoder", "config": '{"dim": 2, "num_maps": 3, "width": 10**9}'}, state),
        "huge": ({"kind": "neural-collages/ifs-encoder", "config": '{"dim": 2, "num_maps": 3, "width": 100000}'}, state),
        "shape": ({"kind": "neural-collages/ifs-encoder", "config": '{"dim": 2, "num_maps": 4, "width": 16}'}, state),
        "nan": ({"kind": "neural-collages/ifs-encoder", "config": '{"dim": 2, "num_maps": 3, "width": 16}'},
                {**state, "head.4.bias": torch.full_like(state["head.4.bias"], float("nan"))}),
    }
    for name, (metadata, tensors) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        write_safetensors(tensors, path, metadata)
        with pytest.raises(FormatError):
            load_encoder(path)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(FormatError):
        load_encoder(tmp_path / "junk.safetensors")


def test_training_lowers_the_collage_loss_and_resumes(tmp_path):
    torch.manual_seed(0)
    config = EncoderConfig(2, 3, width=16)
    g = torch.Generator().manual_seed(5)
    held_out = random_clouds(16, 2, 3, g, points=256)
    with torch.no_grad():
        before = float(collage_chamfer(*IFSEncoder(config)(held_out), held_out))
    path = tmp_path / "e.safetensors"
    done = train_encoder(path, config, minutes=0.15, batch=8, lr=3e-3)
    encoder, info = load_encoder(path)
    assert info["steps"] == done["steps"] > 5
    with torch.no_grad():
        after = float(collage_chamfer(*encoder(held_out), held_out))
    assert after < before
    again = train_encoder(path, config, minutes=0.02, batch=8, resume=True)
    assert again["steps"] > done["steps"]
    with pytest.raises(ConfigurationError):
        train_encoder(path, EncoderConfig(2, 4, width=16), minutes=0.01, resume=True)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_encoders_load_and_beat_an_untrained_one(name):
    path = find_encoder(name, 2, 3)
    encoder, info = load_encoder(path)
    assert info["steps"] > 100
    cfg = encoder.config
    g = torch.Generator().manual_seed(123)
    clouds = random_clouds(16, cfg.dim, cfg.num_maps, g)
    torch.manual_seed(0)
    with torch.no_grad():
        trained = float(collage_chamfer(*encoder(clouds), clouds[:, :256]))
        untrained = float(collage_chamfer(*IFSEncoder(cfg)(clouds), clouds[:, :256]))
    assert trained < 0.7 * untrained


def test_find_encoder_defaults_and_errors():
    assert find_encoder(None, 2, 3) == model_dir() / "ifs-2d-3maps.safetensors"
    with pytest.raises(ConfigurationError, match="shipped ones"):
        find_encoder(None, 3, 7)


def test_amortised_fit_is_one_pass_and_refinement_helps():
    cloud = sample(SIERPINSKI, 20_000)
    encoder, _ = load_encoder(find_encoder(None, 2, 3))
    options = FitOptions(eval_points=5000)
    start = time.perf_counter()
    fast = amortised_fit(cloud, encoder, 0, options)
    assert time.perf_counter() - start < 5
    refined = amortised_fit(cloud, encoder, 60, options)
    assert refined.model.contraction_bound() < 0.95 and fast.model.contraction_bound() < 0.95
    assert refined.attractor_chamfer < fast.attractor_chamfer  # what the refinement is for
    with pytest.raises(ConfigurationError, match="3-D"):
        amortised_fit(sample(TETRAHEDRON, 1000), encoder, 0, options)
    x = Normalisation.of(cloud).to_unit(cloud.double())
    A, t = predict_maps(encoder, x)
    assert A.shape == (3, 2, 2) and A.dtype == torch.float64
