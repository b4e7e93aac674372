"""Rate control: the best file within a byte budget, never over it, with a clear error when impossible."""

import math

import pytest
import torch

from neural_collages.apps.cli.main import main
from neural_collages.assets import sample_image_path
from neural_collages.codecs import budget_bytes, compress, compress_to_size, decompress
from neural_collages.errors import BudgetError, ConfigurationError
from neural_collages.imaging.io import load_image


@pytest.fixture(scope="module")
def image():
    return load_image(sample_image_path())[:, 40:168, 60:188].contiguous()  # 128x128 of the sample


def test_pifs_fills_the_budget_between_its_quality_levels(image):
    q3, q4 = len(compress(image, "pifs", 3)), len(compress(image, "pifs", 4))
    budget = (q3 + q4) // 2  # between two levels: only a finer knob can use it
    sized = compress_to_size(image, "pifs", budget)
    assert sized.size <= budget
    assert sized.size > q3, "rate control should do better than the level below the budget"
    assert sized.lam is not None and sized.quality in (3, 4)
    # An ordinary file: decodes, deterministically.
    assert torch.equal(decompress(sized.data), decompress(sized.data))


def test_more_budget_never_gives_a_worse_pifs_file(image):
    sizes = [compress_to_size(image, "pifs", b).size for b in (600, 1200, 2400)]
    assert sizes == sorted(sizes) and all(s <= b for s, b in zip(sizes, (600, 1200, 2400)))


def test_neural_takes_its_best_quality_within_the_budget(image):
    files = {q: len(compress(image, "neural", q)) for q in (1, 2, 3, 4, 5)}
    budget = files[3]
    sized = compress_to_size(image, "neural", budget)
    assert sized.size <= budget
    assert sized.size == max(size for size in files.values() if size <= budget)


@pytest.mark.parametrize("codec", ["pifs", "neural"])
def test_an_impossible_budget_says_how_small_the_smallest_file_is(image, codec):
    with pytest.raises(BudgetError, match=r"smallest .* has [\d,]+ bytes, more than the budget of 10"):
        compress_to_size(image, codec, 10)


@pytest.mark.parametrize("kwargs", [{}, {"bpp": 1.0, "max_bytes": 10}, {"bpp": -1.0}, {"bpp": math.nan},
                                    {"bpp": math.inf}, {"max_bytes": 0}, {"max_bytes": 2.5}])
def test_bad_budgets_are_refused(kwargs):
    with pytest.raises(ConfigurationError):
        budget_bytes(64, 64, **kwargs)


def test_budget_from_bpp_rounds_down():
    assert budget_bytes(512, 768, bpp=0.25) == 12288
    assert budget_bytes(3, 3, bpp=1.0) == 1


def test_compress_from_the_command_line_with_a_size(tmp_path, capsys):
    src = tmp_path / "in.png"
    from neural_collages.imaging.io import save_image

    save_image(load_image(sample_image_path())[:, :96, :96], src)
    assert main(["compress", str(src), str(tmp_path / "a.clg"), "--max-bytes", "700"]) == 0
    assert (tmp_path / "a.clg").stat().st_size <= 700 and "budget 700 bytes" in capsys.readouterr().out
    assert main(["compress", str(src), str(tmp_path / "b.clg"), "--bpp", "0.6", "--codec", "neural"]) == 0
    assert (tmp_path / "b.clg").stat().st_size <= 0.6 * 96 * 96 / 8
    assert main(["compress", str(src), str(tmp_path / "c.clg"), "--max-bytes", "5"]) == 2
    err = capsys.readouterr().err
    assert "more than the budget of 5" in err and err.count("\n") == 1 and not (tmp_path / "c.clg").exists()
    with pytest.raises(SystemExit):
        main(["compress", str(src), str(tmp_path / "d.clg"), "--bpp", "0.3", "--quality", "2"])
