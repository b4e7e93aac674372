"""``collage batch``: exit codes, one-line errors, and the files it writes."""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neural_collages.apps.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "batch"))
from batch_helpers import crops, make_folder  # noqa: E402


def test_compress_exits_1_and_lists_the_failed_file_and_0_once_it_is_fixed(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_folder(src, n=2, size=48, corrupt=("broken.png",))
    threads = torch.get_num_threads()
    assert main(["batch", "compress", str(src), str(dst), "--serial", "--quality", "1"]) == 1
    assert torch.get_num_threads() == threads  # a serial batch leaves the caller's torch settings alone
    out = capsys.readouterr().out
    assert "2 compressed, 0 already done, 1 failed, of 3" in out and "failed: broken.png: cannot read image" in out
    (src / "broken.png").unlink()
    assert main(["batch", "compress", str(src), str(dst), "--serial", "--quality", "1"]) == 0
    assert "0 compressed, 2 already done, 0 failed, of 2" in capsys.readouterr().out


def test_decompress_and_tile_and_mosaic_from_the_command_line(tmp_path, capsys):
    src, clg, png = tmp_path / "src", tmp_path / "clg", tmp_path / "png"
    make_folder(src, n=1, size=48)
    assert main(["batch", "compress", str(src), str(clg), "--serial", "--quality", "1"]) == 0
    assert main(["batch", "decompress", str(clg), str(png), "--serial", "--scale", "2"]) == 0
    assert Image.open(png / "img0.png").size == (96, 96)

    Image.fromarray(crops(1, size=96)[0]).save(tmp_path / "big.png")
    assert main(["batch", "tile", str(tmp_path / "big.png"), str(tmp_path / "t"), "--tile", "64", "--serial",
                 "--quality", "1"]) == 0
    assert main(["batch", "mosaic", str(tmp_path / "t"), str(tmp_path / "m.png"), "--serial"]) == 0
    assert np.asarray(Image.open(tmp_path / "m.png")).shape == (96, 96, 3)
    capsys.readouterr()
    assert main(["batch", "mosaic", str(tmp_path / "t"), str(tmp_path / "m.png"), "--serial"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_usage_errors_are_one_line_and_exit_2(tmp_path, capsys):
    cases = [
        (["batch", "compress", str(tmp_path / "nope"), str(tmp_path / "d"), "--serial"], "not a folder"),
        (["batch", "compress", str(tmp_path), str(tmp_path / "d"), "--serial", "--workers", "2"], "--serial"),
        (["batch", "compress", str(tmp_path), str(tmp_path / "d"), "--serial", "--quality", "99"], "--quality"),
        (["batch", "compress", str(tmp_path), str(tmp_path / "d"), "--serial", "--model", "aerial"], "--model"),
        (["batch", "compress", str(tmp_path), str(tmp_path / "d"), "--scheduler", "tcp://x:1", "--workers", "2"],
         "--scheduler"),
        (["batch", "tile", str(tmp_path / "none.png"), str(tmp_path / "t"), "--serial"], "no such file"),
        (["batch", "tile", str(tmp_path / "none.png"), str(tmp_path / "t"), "--serial", "--tile", "100"],
         "multiple of 32"),
        (["batch", "mosaic", str(tmp_path), str(tmp_path / "m.png"), "--serial"], "no mosaic.json"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
