import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from neural_collages.apps.cli import main
from neural_collages.assets import sample_image_path
from neural_collages.imaging.io import load_image
from neural_collages.imaging.metrics import psnr


@pytest.fixture
def small_image(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:36]
    base = 0.5 + 0.4 * np.sin(xx / 5.0)[..., None] * np.cos(yy / 7.0)[..., None] * np.array([1.0, 0.6, 0.3])
    pixels = np.clip(base + 0.02 * rng.standard_normal(base.shape), 0, 1)
    path = tmp_path / "small.png"
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(path)
    return path


def test_sample_image_is_shipped():
    image = load_image(sample_image_path())
    assert image.shape == (3, 256, 256)


def test_demo_writes_decodes_at_both_scales(small_image, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["demo", "--image", str(small_image), "--out", str(out), "--scale", "3", "--animate",
                 "--quality", "7"]) == 0
    original = load_image(out / "original.png")
    one = load_image(out / "decoded_1x.png")
    three = load_image(out / "decoded_3x.png")
    assert one.shape == (3, 40, 36) and three.shape == (3, 120, 108)
    assert float(psnr(original, one)) > 25
    # The file decodes to the written image, and the zoom pools back to it: exactly per coded plane
    # (tests/codecs), here up to 8-bit rounding and the chroma interpolation of both decodes.
    from neural_collages.codecs import decompress

    assert torch.equal(decompress((out / "image.clg").read_bytes()), one)
    pooled = three.reshape(3, 40, 3, 36, 3).mean(dim=(2, 4))
    assert (pooled - one).abs().mean() < 2 / 255
    assert (out / "decode.gif").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "PSNR" in printed and "bpp" in printed and "jpeg" in printed


def test_demo_refuses_to_overwrite_without_force(small_image, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["demo", "--image", str(small_image), "--out", str(out), "--scale", "2"]
    assert main(args) == 0
    before = (out / "decoded_1x.png").stat().st_mtime_ns
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "decoded_1x.png").stat().st_mtime_ns == before
    assert main(args + ["--force"]) == 0


def test_bad_input_gives_one_clear_line(tmp_path, capsys):
    bogus = tmp_path / "bogus.png"
    bogus.write_bytes(b"not an image at all")
    assert main(["demo", "--image", str(bogus), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("collage: error:") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert main(["demo", "--image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--scale", "0"])
    assert exc.value.code == 2


def test_help_for_every_subcommand():
    for command in ("demo", "compress", "decompress", "info", "fractalize", "app", "corpus", "train"):
        result = subprocess.run([sys.executable, "-m", "neural_collages", command, "--help"], capture_output=True,
                                text=True)
        assert result.returncode == 0 and f"usage: collage {command}" in result.stdout, result.stderr


def test_help_and_version_do_not_import_torch():
    # Start-up: torch takes seconds to import; parsing and --help must not need it.
    probe = (
        "import sys\n"
        "from neural_collages.apps.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("torch not imported")
    assert "usage: collage" in result.stdout


def test_compress_decompress_info_round_trip(small_image, tmp_path, capsys):
    packed = tmp_path / "small.clg"
    assert main(["compress", str(small_image), str(packed), "--quality", "6"]) == 0
    assert main(["info", str(packed)]) == 0
    info = capsys.readouterr().out
    assert "pifs" in info and "36x40" in info and "bpp" in info
    out = tmp_path / "small_out.png"
    zoom = tmp_path / "small_x2.png"
    assert main(["decompress", str(packed), str(out)]) == 0
    assert main(["decompress", str(packed), str(zoom), "--scale", "2"]) == 0
    original, decoded = load_image(small_image), load_image(out)
    assert decoded.shape == original.shape and float(psnr(original, decoded)) > 25
    assert load_image(zoom).shape == (3, 80, 72)
    # Never overwrite without --force, and leave the old file intact.
    before = packed.read_bytes()
    assert main(["compress", str(small_image), str(packed), "--quality", "1"]) == 2
    assert packed.read_bytes() == before
    assert main(["compress", str(small_image), str(packed), "--quality", "1", "--force"]) == 0
    assert len(packed.read_bytes()) < len(before)


def test_codec_commands_reject_bad_input_with_one_line(small_image, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.clg"
    corrupt.write_bytes(b"NCLG" + bytes(40))
    cases = [
        ["decompress", str(corrupt), str(tmp_path / "o.png")],
        ["info", str(corrupt)],
        ["decompress", str(tmp_path / "missing.clg"), str(tmp_path / "o.png")],
        ["compress", str(corrupt), str(tmp_path / "o.clg")],
        ["compress", str(small_image), str(tmp_path / "o.clg"), "--quality", "99"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("collage: error:") and len(err.splitlines()) == 1, (argv, err)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.clg").exists()


def test_compress_images_with_transparency_needs_an_explicit_choice(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from neural_collages.apps.cli import main

    rgba = np.zeros((24, 40, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.linspace(0, 255, 40, dtype=np.uint8)[None, :]
    src = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(src)
    assert main(["compress", str(src), str(tmp_path / "a.clg")]) == 2
    assert "--alpha composite" in capsys.readouterr().err
    assert not (tmp_path / "a.clg").exists()
    assert main(["compress", str(src), str(tmp_path / "a.clg"), "--alpha", "composite", "--quality", "1"]) == 0
    assert main(["compress", str(src), str(tmp_path / "b.clg"), "--alpha", "drop", "--quality", "1"]) == 0


def test_output_checks_come_before_any_work(small_image, tmp_path, capsys):
    packed = tmp_path / "small.clg"
    assert main(["compress", str(small_image), str(packed), "--quality", "1"]) == 0
    # Never write over the input, not even with --force.
    before = small_image.read_bytes()
    assert main(["compress", str(small_image), str(small_image), "--force"]) == 2
    assert "also the input" in capsys.readouterr().err and small_image.read_bytes() == before
    # An output suffix no image writer knows fails at once, not after the decode.
    assert main(["decompress", str(packed), str(tmp_path / "out.xyz")]) == 2
    assert "unknown output suffix" in capsys.readouterr().err
    # --max-pixels bounds the output from the header alone.
    assert main(["decompress", str(packed), str(tmp_path / "o.png"), "--scale", "2", "--max-pixels", "1000"]) == 2
    assert "more than the limit of 1,000" in capsys.readouterr().err and not (tmp_path / "o.png").exists()
    assert main(["info", str(packed)]) == 0
    assert "largest scale within the" in capsys.readouterr().out


def test_compress_takes_the_fast_search_for_pifs_only(small_image, tmp_path, capsys):
    packed = tmp_path / "fast.clg"
    assert main(["compress", str(small_image), str(packed), "--search", "fast"]) == 0
    out = tmp_path / "fast.png"
    assert main(["decompress", str(packed), str(out)]) == 0
    assert float(psnr(load_image(small_image), load_image(out))) > 25
    capsys.readouterr()
    assert main(["compress", str(small_image), str(tmp_path / "n.clg"), "--codec", "neural", "--search", "fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "collage: error: --search applies to --codec pifs only"
    assert not (tmp_path / "n.clg").exists()


def test_compress_names_the_neural_model_it_chose_and_exact_model_keeps_the_flag(small_image, tmp_path, capsys):
    from neural_collages.coding.container import unpack

    exact = tmp_path / "exact.clg"
    assert main(["compress", str(small_image), str(exact), "--codec", "neural", "--model", "aerial",
                 "--quality", "1", "--exact-model"]) == 0
    assert "(model aerial-q1)" in capsys.readouterr().out
    assert unpack(exact.read_bytes())[0].params["model"] == "aerial-q1"
    chosen = tmp_path / "chosen.clg"
    assert main(["compress", str(small_image), str(chosen), "--codec", "neural", "--model", "aerial",
                 "--quality", "1"]) == 0
    assert f"(model {unpack(chosen.read_bytes())[0].params['model']})" in capsys.readouterr().out
    assert main(["compress", str(small_image), str(tmp_path / "p.clg"), "--exact-model"]) == 2
    assert capsys.readouterr().err.strip() == "collage: error: --exact-model applies to --codec neural only"
    assert not (tmp_path / "p.clg").exists()
