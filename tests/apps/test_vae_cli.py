"""``collage vae``: train -> eval -> sample -> reconstruct, and one-line errors for bad input."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neural_collages.apps.cli import main
from neural_collages.vae.files import save_vae

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vae"))
from vae_helpers import tiny_vae  # noqa: E402


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_vae(tiny_vae(), path, {"steps": 0})
    return path


@pytest.fixture
def idx_folder(tmp_path):
    """A folder of idx files holding 40 'digits' (bars), as classic MNIST ships them."""
    folder = tmp_path / "idx"
    folder.mkdir()
    rng = np.random.default_rng(0)
    x = np.zeros((40, 28, 28), np.uint8)
    for i in range(40):
        r, c = rng.integers(4, 20, 2)
        x[i, r : r + 8, c : c + 3] = 255
    for prefix in ("train", "t10k"):
        header = b"\x00\x00\x08\x03" + (40).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + x.tobytes())
    return folder


def test_train_then_eval_then_sample_then_reconstruct(tmp_path, idx_folder, capsys):
    run = tmp_path / "run"
    assert main(["vae", "train", str(idx_folder), str(run), "--steps", "3", "--batch", "8"]) == 0
    assert (run / "model.safetensors").is_file() and (run / "checkpoint.safetensors").is_file()
    assert main(["vae", "train", str(idx_folder), str(run), "--steps", "4", "--batch", "8", "--resume"]) == 0
    capsys.readouterr()
    assert main(["vae", "eval", str(run), "--data", str(idx_folder), "--k", "4", "--limit", "10", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"nll_nats", "elbo_nats", "bits_per_dim", "k", "n"}
    assert result["k"] == 4 and result["n"] == 10 and result["nll_nats"] > 0
    # The importance-weighted bound is tighter than the ELBO (an upper bound on the NLL, lower).
    assert result["nll_nats"] < result["elbo_nats"] + 1.0
    out = tmp_path / "grid.png"
    assert main(["vae", "sample", str(run), str(out), "--n", "6", "--scale", "2", "--seed", "3"]) == 0
    assert Image.open(out).size == (3 * 56, 2 * 56)


def test_the_same_seed_samples_the_same_digits_at_every_scale(model_file, tmp_path):
    small, big = tmp_path / "s.png", tmp_path / "b.png"
    assert main(["vae", "sample", str(model_file), str(small), "--n", "4", "--seed", "5"]) == 0
    assert main(["vae", "sample", str(model_file), str(big), "--n", "4", "--seed", "5", "--scale", "10"]) == 0
    a = np.asarray(Image.open(small), np.float64)
    b = np.asarray(Image.open(big), np.float64).reshape(56, 10, 56, 10).mean(axis=(1, 3))
    # Means are a sigmoid of the fixed point, so pooling them is close, not equal, to the 1x means.
    assert np.abs(a - b).mean() < 8.0


def test_reconstruct_writes_the_digit_at_the_chosen_scale(model_file, tmp_path):
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255
    Image.fromarray(digit).save(tmp_path / "one.png")
    out = tmp_path / "one_x4.png"
    assert main(["vae", "reconstruct", str(model_file), str(tmp_path / "one.png"), str(out), "--scale", "4"]) == 0
    assert Image.open(out).size == (112, 112)


@pytest.mark.parametrize("argv, message", [
    (["vae", "sample", "MODEL", "OUT.png", "--scale", "2", "--n", "2"], None),
    (["vae", "sample", "nonexistent-model", "OUT.png"], "shipped model"),
    (["vae", "sample", "MODEL", "OUT.jpg2"], "suffix"),
    (["vae", "sample", "MODEL", "OUT.png", "--temperature", "5"], "temperature"),
    (["vae", "sample", "MODEL", "OUT.png", "--n", "64", "--scale", "64"], "pixels"),
    (["vae", "reconstruct", "MODEL", "NOTIMAGE", "OUT.png"], "not an image"),
    (["vae", "train", "IDX", "RUN"], "budget"),
    (["vae", "train", "IDX", "RUN", "--steps", "1", "--lr", "-1"], "--lr"),
    (["vae", "train", "IDX", "RUN", "--steps", "1", "--device", "tpu"], "--device"),
    (["vae", "eval", "JUNK"], "safetensors"),
])
def test_bad_input_gives_one_line_and_status_2(argv, message, model_file, idx_folder, tmp_path, capsys):
    (tmp_path / "junk.safetensors").write_bytes(b"junk" * 10)
    (tmp_path / "not-an-image.png").write_text("hello")
    names = {"MODEL": str(model_file), "OUT.png": str(tmp_path / "out.png"), "OUT.jpg2": str(tmp_path / "o.jpg2"),
             "NOTIMAGE": str(tmp_path / "not-an-image.png"), "IDX": str(idx_folder), "RUN": str(tmp_path / "r"),
             "JUNK": str(tmp_path / "junk.safetensors")}
    argv = [names.get(a, a) for a in argv]
    if message is None:  # a fine command: the second run must refuse to overwrite without --force
        assert main(argv) == 0
        capsys.readouterr()
        message = "--force"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("collage: error:") and err.count("\n") == 1 and message in err, err
