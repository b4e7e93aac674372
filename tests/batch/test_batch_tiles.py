"""Tiled rasters: the mosaic equals the per-tile decodes, and a tampered layout or tile is refused."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from neural_collages.batch import make_engine, mosaic_image, read_layout, tile_image
from neural_collages.batch.tasks import EncodeSettings
from neural_collages.batch.tiles import LAYOUT_NAME, grid
from neural_collages.codecs import decompress
from neural_collages.errors import CollageError, ConfigurationError, FormatError
from neural_collages.imaging.io import to_uint8

from batch_helpers import crops

FAST = EncodeSettings("pifs", 1)


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    """A 160x100 image cut into 64-px tiles (3 x 2, ragged at the right and bottom)."""
    root = tmp_path_factory.mktemp("tiles")
    pixels = crops(1, size=160)[0][:100]
    Image.fromarray(pixels).save(root / "big.png")
    summary = tile_image(root / "big.png", root / "t", tile=64, settings=FAST, progress=False)
    assert summary.ok and summary.done == 6
    return root / "t", pixels


def test_grid_covers_the_image_once():
    tiles = grid(160, 100, 64)
    covered = np.zeros((100, 160), int)
    for t in tiles:
        covered[t.y : t.y + t.height, t.x : t.x + t.width] += 1
    assert (covered == 1).all() and len(tiles) == 6 and tiles[2].width == 32 and tiles[3].height == 36


@pytest.mark.parametrize("scale", [1, 2])
def test_mosaic_is_the_per_tile_decodes_put_side_by_side(tiled, scale):
    folder, _ = tiled
    canvas = mosaic_image(folder, scale, progress=False)
    layout = read_layout(folder)
    assert canvas.shape == (100 * scale, 160 * scale, 3)
    for t in layout.tiles:
        alone = to_uint8(decompress((folder / t.file).read_bytes(), scale=scale)).permute(1, 2, 0).numpy()
        y, x = t.y * scale, t.x * scale
        np.testing.assert_array_equal(canvas[y : y + alone.shape[0], x : x + alone.shape[1]], alone)


@pytest.mark.slow
def test_tiles_on_a_local_cluster_are_the_same_files(tiled, tmp_path):
    folder, _ = tiled
    with make_engine(workers=2) as engine:
        tile_image(folder.parent / "big.png", tmp_path / "t", tile=64, settings=FAST, engine=engine, progress=False)
        canvas = mosaic_image(tmp_path / "t", 1, engine=engine, progress=False)
    for t in read_layout(folder).tiles:
        assert (tmp_path / "t" / t.file).read_bytes() == (folder / t.file).read_bytes()
    np.testing.assert_array_equal(canvas, mosaic_image(folder, 1, progress=False))


def test_mosaic_is_close_to_the_source(tiled):
    folder, pixels = tiled
    canvas = mosaic_image(folder, 1, progress=False)
    err = np.abs(canvas.astype(float) - pixels.astype(float)).mean()
    assert err < 20  # a lossy code of the same picture, not another one


def _copy(folder, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    for p in folder.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    return out


def test_a_changed_tile_file_is_refused(tiled, tmp_path):
    folder = _copy(tiled[0], tmp_path)
    data = bytearray((folder / "r000-c001.clg").read_bytes())
    data[-1] ^= 1
    (folder / "r000-c001.clg").write_bytes(bytes(data))
    with pytest.raises(CollageError, match="r000-c001.clg does not match its digest"):
        mosaic_image(folder, progress=False)
    (folder / "r001-c000.clg").unlink()
    with pytest.raises(CollageError, match="missing|digest"):
        mosaic_image(folder, progress=False)


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.update(version=2), "version"),
    (lambda o: o.update(width=10**9), "width"),
    (lambda o: o.update(tile=50), "tile"),
    (lambda o: o["tiles"].pop(), "tile list"),
    (lambda o: o["tiles"][1].update(file="../../etc/passwd"), "not tile"),
    (lambda o: o["tiles"][1].update(x=3), "not tile"),
    (lambda o: o["tiles"][0].update(sha256="zz"), "sha256"),
    (lambda o: o.update(format="other"), "not a"),
])
def test_a_tampered_layout_is_refused_before_any_decoding(tiled, tmp_path, edit, message):
    folder = _copy(tiled[0], tmp_path)
    obj = json.loads((folder / LAYOUT_NAME).read_text())
    edit(obj)
    (folder / LAYOUT_NAME).write_text(json.dumps(obj))
    with pytest.raises(FormatError, match=message):
        mosaic_image(folder, progress=False)


def test_the_output_size_is_checked_before_allocating(tiled):
    with pytest.raises(ConfigurationError, match="more than the limit"):
        mosaic_image(tiled[0], 4, max_pixels=1000, progress=False)
    with pytest.raises(ConfigurationError, match="scale"):
        mosaic_image(tiled[0], 0, progress=False)


def test_bad_tile_sizes_and_missing_layouts_give_clear_errors(tmp_path, tiled):
    for tile in (0, 31, 100, 10**6, True):
        with pytest.raises(ConfigurationError, match="multiple of 32"):
            tile_image(tiled[0].parent / "big.png", tmp_path / "t", tile=tile, progress=False)
    with pytest.raises(CollageError, match="no mosaic.json"):
        mosaic_image(tmp_path, progress=False)


def test_tiling_is_resumable(tiled, tmp_path):
    folder, _ = tiled
    out = tmp_path / "t"
    tile_image(folder.parent / "big.png", out, tile=64, settings=FAST, progress=False)
    (out / LAYOUT_NAME).unlink()
    (out / "r001-c002.clg").unlink()
    again = tile_image(folder.parent / "big.png", out, tile=64, settings=FAST, progress=False)
    assert (again.done, again.skipped) == (1, 5) and (out / LAYOUT_NAME).exists()
    assert torch.equal(torch.from_numpy(mosaic_image(out, progress=False)),
                       torch.from_numpy(mosaic_image(folder, progress=False)))
