"""``collage ifs``: fit -> ifs.json -> render (image or points), gallery, and one-line errors."""

import json

import numpy as np
import pytest
import torch

from neural_collages.apps.cli import main
from neural_collages.ifs.gallery import SIERPINSKI, sample
from neural_collages.ifs.io import read_cloud, read_ifs, write_ifs
from neural_collages.imaging.io import load_image


@pytest.fixture
def cloud(tmp_path):
    path = tmp_path / "sierpinski.npy"
    np.save(path, sample(SIERPINSKI, 5000).numpy())
    return path


def test_fit_writes_a_valid_ifs_file(cloud, tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["ifs", "fit", str(cloud), "--maps", "3", "-o", str(out), "--restarts", "2", "--steps", "20"]) == 0
    assert "attractor Chamfer" in capsys.readouterr().out
    A, t, p = read_ifs(out)
    assert A.shape == (3, 2, 2) and float(torch.linalg.matrix_norm(A, ord=2).max()) < 0.95
    assert json.loads(out.read_text())["fit"]["points"] == 5000


def test_fit_says_how_it_searched_and_no_self_cover_is_random_restarts_only(cloud, tmp_path, capsys):
    out, plain = tmp_path / "s.json", tmp_path / "plain.json"
    assert main(["ifs", "fit", str(cloud), "--maps", "3", "-o", str(out), "--restarts", "1", "--steps", "10"]) == 0
    assert json.loads(out.read_text())["fit"]["method"] == "self-cover starts and 1 restarts"
    assert main(["ifs", "fit", str(cloud), "--maps", "3", "-o", str(plain), "--restarts", "1", "--steps", "10",
                 "--no-self-cover"]) == 0
    assert json.loads(plain.read_text())["fit"]["method"] == "1 restarts"
    capsys.readouterr()
    assert main(["ifs", "fit", str(cloud), "--maps", "3", "-o", str(tmp_path / "e.json"), "--encoder",
                 "--no-self-cover"]) == 2
    assert "--no-self-cover applies to fitting from scratch" in capsys.readouterr().err


def test_render_an_image_and_points_in_the_ifs_own_coordinates(tmp_path):
    # A Sierpinski triangle moved to x in [10, 30], y in [-5, 12.3]: the rendered points are there.
    A, t, p = SIERPINSKI.maps()
    shift, scale = torch.tensor([10.0, -5.0], dtype=torch.float64), 20.0
    t_moved = scale * t + shift - torch.einsum("nij,j->ni", A, shift)
    path = tmp_path / "moved.json"
    write_ifs(path, A, t_moved, p)
    png, ply, npy = tmp_path / "s.png", tmp_path / "s.ply", tmp_path / "s.npy"
    assert main(["ifs", "render", str(path), str(png), "--points", "2e4", "--size", "64"]) == 0
    assert load_image(png).shape == (3, 64, 64)
    assert main(["ifs", "render", str(path), str(ply), "--points", "1e4", "--seed", "3"]) == 0
    assert main(["ifs", "render", str(path), str(npy), "--points", "1e4", "--seed", "3"]) == 0
    points = read_cloud(ply)
    assert points.shape == (10_000, 2) and torch.equal(points, read_cloud(npy))
    torch.testing.assert_close(points.min(0).values, shift, atol=0.1, rtol=0)
    torch.testing.assert_close(points.max(0).values, shift + scale * torch.tensor([1.0, 3**0.5 / 2], dtype=torch.float64),
                               atol=0.1, rtol=0)


def test_fit_with_the_shipped_encoder(cloud, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["ifs", "fit", str(cloud), "--maps", "3", "-o", str(out), "--encoder", "--refine", "10"]) == 0
    assert "encoder" in capsys.readouterr().out
    assert read_ifs(out)[0].shape == (3, 2, 2)


@pytest.mark.parametrize("args, match", [
    (["ifs", "fit", "{cloud}", "--maps", "3", "-o", "{tmp}/x.txt"], "suffix"),
    (["ifs", "fit", "{tmp}/missing.npy", "--maps", "3", "-o", "{tmp}/x.json"], "no such file"),
    (["ifs", "fit", "{cloud}", "--maps", "65", "-o", "{tmp}/x.json"], "maps"),
    (["ifs", "fit", "{cloud}", "--maps", "3", "-o", "{cloud}"], "input"),
    (["ifs", "fit", "{cloud}", "--maps", "3", "-o", "{tmp}/x.json", "--encoder", "nope"], "no IFS encoder"),
    (["ifs", "render", "{tmp}/bad.json", "{tmp}/x.png"], "JSON"),
    (["ifs", "render", "{tmp}/bad.json", "{tmp}/x.gif2"], "suffix"),
    (["ifs", "render", "{tmp}/bad.json", "{tmp}/x.png", "--size", "100000"], "size"),
    (["ifs", "gallery", "{tmp}/g", "--names", "dragon"], "unknown"),
    (["ifs", "train-encoder", "{tmp}/e.bin"], "safetensors"),
    (["ifs", "train-encoder", "{tmp}/e.safetensors", "--minutes", "nan"], "minutes"),
])
def test_bad_input_is_one_line_and_exit_status_2(cloud, tmp_path, capsys, args, match):
    (tmp_path / "bad.json").write_text("{not json")
    argv = [a.format(cloud=cloud, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("collage: error:") and match in err[0], err


def test_outputs_are_never_overwritten_without_force(cloud, tmp_path, capsys):
    out = tmp_path / "s.json"
    out.write_text("keep")
    assert main(["ifs", "fit", str(cloud), "--maps", "3", "-o", str(out), "--restarts", "1", "--steps", "1"]) == 2
    assert out.read_text() == "keep" and "--force" in capsys.readouterr().err


@pytest.mark.slow
def test_gallery_writes_the_figure_the_distances_and_every_ifs(tmp_path, capsys):
    folder = tmp_path / "g"
    assert main(["ifs", "gallery", str(folder), "--names", "sierpinski,ring", "--points", "5000",
                 "--restarts", "2"]) == 0
    entries = json.loads((folder / "gallery.json").read_text())
    assert [e["name"] for e in entries] == ["sierpinski", "ring"]
    assert all(e["ratio"] > 0 for e in entries)
    assert load_image(folder / "gallery.png").shape[0] == 3
    assert read_ifs(folder / "ring.json")[0].shape == (6, 2, 2)
