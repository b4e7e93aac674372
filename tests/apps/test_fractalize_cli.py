"""``collage fractalize``: outputs at the zoom, a code that renders the same picture, clear errors."""

import pytest
import torch
import torch.nn.functional as F

from neural_collages.apps.cli import main
from neural_collages.codecs import decompress
from neural_collages.imaging.io import load_image, save_image


@pytest.fixture
def picture(tmp_path):
    torch.manual_seed(0)
    x = F.interpolate(torch.rand(1, 3, 6, 5), size=(48, 40), mode="bilinear", align_corners=False)[0]
    path = tmp_path / "in.png"
    save_image(x, path)
    return path


def test_fractalize_writes_the_zoomed_picture_the_code_and_both_animations(picture, tmp_path, capsys):
    out, code, gif, zoom = (tmp_path / n for n in ("art.png", "art.clg", "decode.gif", "zoom.gif"))
    args = ["fractalize", str(picture), str(out), "--zoom", "3", "--steps", "5", "--code", str(code),
            "--gif", str(gif), "--zoom-video", str(zoom)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "collage loss" in text and "PSNR" in text
    art = load_image(out)
    assert art.shape == (3, 144, 120)
    # The saved code renders the same picture (up to 8-bit rounding) at the same scale.
    assert (decompress(code.read_bytes(), scale=3) - art).abs().max() <= 1 / 255 + 1e-6
    assert gif.stat().st_size > 0 and zoom.stat().st_size > 0
    assert main(args) == 2  # outputs exist: refused without --force, files kept
    assert "--force" in capsys.readouterr().err
    assert load_image(out).shape == (3, 144, 120)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--zoom", "17"], "--zoom"),
        (["--s-max", "1.5"], "--s-max"),
        (["--steps", "-3"], "--steps"),
        (["--range", "128"], "--range"),
        (["--gif", "decode.png"], "GIF"),
    ],
)
def test_bad_options_are_one_line_errors(picture, tmp_path, capsys, extra, message):
    assert main(["fractalize", str(picture), str(tmp_path / "o.png"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("collage: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o.png").exists()


def test_a_non_image_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert main(["fractalize", str(bad), str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("collage: error:") and err.count("\n") == 1
