"""Clouds and ifs.json on disk: round trips, and hostile files refused with one clear error before any work."""

import json

import numpy as np
import pytest
import torch

from neural_collages.errors import CollageError, FormatError
from neural_collages.ifs.gallery import FERN, SIERPINSKI, TETRAHEDRON, sample
from neural_collages.ifs.io import ifs_to_json, parse_ifs, read_cloud, read_ifs, write_ifs, write_points
from neural_collages.imaging.io import save_image


@pytest.mark.parametrize("suffix", [".npy", ".ply"])
@pytest.mark.parametrize("classic", [SIERPINSKI, TETRAHEDRON], ids=lambda c: c.name)
def test_points_round_trip(tmp_path, suffix, classic):
    x = sample(classic, 1000)
    path = tmp_path / f"c{suffix}"
    write_points(x, path)
    torch.testing.assert_close(read_cloud(path).float(), x)
    with pytest.raises(CollageError):
        write_points(x, path)  # no overwrite without force


def test_text_clouds_with_comments_commas_and_extra_columns(tmp_path):
    path = tmp_path / "c.xyz"
    path.write_text("# x y z r g b\n1 2 3 255 0 0\n4,5,6,0,255,0\n\n7 8 9 0 0 255  # last\n")
    assert read_cloud(path).tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    path.write_text("1 2\n3 4\n")
    assert read_cloud(path).shape == (2, 2)


def test_an_image_is_read_as_its_dark_pixels_with_y_up(tmp_path):
    image = torch.ones(1, 4, 5)
    image[0, 0, 1] = 0  # top row
    image[0, 3, 4] = 0.2  # bottom row
    path = tmp_path / "drawing.png"
    save_image(image, path)
    assert sorted(read_cloud(path).tolist()) == [[1.5, 3.5], [4.5, 0.5]]


@pytest.mark.parametrize("name, content, match", [
    ("a.npy", None, "no such file"),
    ("empty.xyz", b"", "empty"),
    ("nan.xyz", b"1 2\nnan 3\n", "NaN"),
    ("word.xyz", b"1 2\nx 3\n", "not a number"),
    ("ragged.xyz", b"1 2 3\n4 5\n", "coordinates"),
    ("one.xyz", b"1\n", "coordinates"),
    ("bad.npy", b"\x93NUMPY garbage", "npy"),
    ("bomb.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 900000000\nproperty float x\n"
                 b"property float y\nend_header\n" + b"\0" * 64, "vertices"),
    ("noxy.ply", b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float a\nend_header\n1\n", "x and y"),
    ("short.ply", b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nend_header\n1 2\n",
     "PLY"),
    ("nohead.ply", b"ply\nformat ascii 1.0\n", "header"),
    ("c.obj", b"v 1 2 3\n", "suffix"),
])
def test_hostile_cloud_files_give_one_clear_error(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CollageError, match=match):
        read_cloud(path)


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "o.npy"
    np.save(path, np.array([[1, 2], [3, 4]], dtype=object), allow_pickle=True)
    with pytest.raises(FormatError):
        read_cloud(path)


def test_ifs_json_round_trips(tmp_path):
    A, t, p = FERN.maps()
    path = tmp_path / "fern.json"
    write_ifs(path, A, t, p, fit={"note": "test"})
    A2, t2, p2 = read_ifs(path)
    assert torch.equal(A2, A) and torch.equal(t2, t) and torch.allclose(p2, p)
    doc = json.loads(path.read_text())
    assert doc["format"] == "neural-collages-ifs" and doc["dim"] == 2 and len(doc["maps"]) == 4
    for m in doc["maps"]:
        del m["p"]
    _, _, p3 = parse_ifs(json.dumps(doc))
    assert torch.allclose(p3.sum(), torch.tensor(1.0, dtype=torch.float64))  # defaults to |det A|


def _doc(**change):
    doc = json.loads(ifs_to_json(*SIERPINSKI.maps()))
    doc.update(change)
    return json.dumps(doc)


@pytest.mark.parametrize("text, match", [
    ("{", "JSON"),
    ("[]", "not an IFS"),
    (_doc(version=2), "version"),
    (_doc(dim=4), "dim"),
    (_doc(dim=3), "3x3"),
    (_doc(maps=[]), "maps"),
    (_doc(maps=[{"A": [[2, 0], [0, 2]], "t": [0, 0]}]), "contractive"),
    (_doc(maps=[{"A": [[0.5, 0], [0, 0.5]], "t": [0, "1"]}]), "finite numbers"),
    (_doc(maps=[{"A": [[0.5, 0], [0, 0.5]], "t": [0, 0], "p": 1}, {"A": [[0.5, 0], [0, 0.5]], "t": [1, 0]}]),
     "every map"),
    (_doc(maps=[{"A": [[0.5, 0], [0, 0.5]], "t": [0, 0], "p": -1}]), "probabilities"),
    ('{"format": "neural-collages-ifs", "version": 1, "dim": 2, "maps": [{"A": [[NaN, 0], [0, 0]], "t": [0, 0]}]}',
     "JSON"),
    ("[" * 100_000 + "]" * 100_000, "bytes|JSON"),
    (_doc(maps=[{"A": [[0.5, 0], [0, 0.5]], "t": [0, 0]}] * 65), "maps"),
])
def test_hostile_ifs_files_give_one_clear_error(text, match):
    with pytest.raises(FormatError, match=match):
        parse_ifs(text)
