"""PIFS with the fast (clustered) domain search: ordinary files, windows mapped back exactly, close to exhaustive."""

import pytest
import torch

from neural_collages.assets import sample_image_path
from neural_collages.codecs import compress, decompress
from neural_collages.codecs.pifs import analysis
from neural_collages.codecs.pifs.config import PifsConfig
from neural_collages.core.fast_search import ClusterSearchSettings
from neural_collages.core.quadtree import QuadtreeCollage
from neural_collages.errors import ConfigurationError
from neural_collages.imaging.io import load_image
from neural_collages.imaging.metrics import psnr

pytest.importorskip("faiss")
CONFIG = PifsConfig()


#: Small lists, so that every level of the sample image is clustered.
INDEXED = ClusterSearchSettings(list_size=64)


@pytest.fixture(scope="module")
def photo():
    return load_image(sample_image_path())


@pytest.fixture(scope="module")
def luma(photo):
    return analysis.image_planes(photo, analysis.plane_layouts(256, 256, 3, CONFIG))[0]


@pytest.fixture
def indexed(monkeypatch):
    monkeypatch.setattr(analysis, "FAST_SETTINGS", INDEXED)


def _small_windows(monkeypatch, margin):
    monkeypatch.setattr(analysis, "FAST_WINDOW", 128)
    monkeypatch.setattr(analysis, "FAST_TILE", 96)
    monkeypatch.setattr(analysis, "FAST_MARGIN", margin)


def test_window_results_name_the_planes_own_candidates_inside_each_window(luma, monkeypatch):
    _small_windows(monkeypatch, 64)
    qt = QuadtreeCollage(luma.shape, CONFIG.block_sizes, CONFIG.domain_strides)
    levels = analysis._analyse_windows(luma, qt, CONFIG, analysis.exhaustive_match, None)
    x = luma.reshape(1, 1, *luma.shape)
    for op, n, la in zip(qt.operators, CONFIG.block_sizes, levels):
        ranges = op.ranges(x)[0, 0]
        centred = ranges - ranges.mean(-1, keepdim=True)
        torch.testing.assert_close(la.mean, ranges.mean(-1))
        fitted = la.sxx > 0
        assert fitted.float().mean() > 0.5
        chosen = op.candidates(x)[0, 0][la.candidate[fitted]]
        torch.testing.assert_close((centred[fitted] * chosen).sum(-1), la.sxy[fitted], rtol=1e-4, atol=1e-2)
        # Each domain lies inside the window of its range's tile (tiles of 96 px, 64 px around them).
        rows, cols = op.lattices[0].grid
        stride = op.lattices[0].stride[0]
        domain = la.candidate[fitted] // 8
        dy, dx = domain // cols * stride, domain % cols * stride
        r = fitted.nonzero()[:, 0]
        ry, rx = r // (luma.shape[1] // n) * n, r % (luma.shape[1] // n) * n
        ty, tx = ry // 96 * 96, rx // 96 * 96
        assert bool(((dy >= (ty - 64).clamp(min=0)) & (dy + 2 * n <= ty + 96 + 64)).all())
        assert bool(((dx >= (tx - 64).clamp(min=0)) & (dx + 2 * n <= tx + 96 + 64)).all())


def test_windows_that_cover_the_plane_give_the_whole_plane_search(luma, indexed, monkeypatch):
    qt = QuadtreeCollage(luma.shape, CONFIG.block_sizes, CONFIG.domain_strides)
    whole = analysis.analyse_plane(luma, qt, CONFIG, search="fast")
    _small_windows(monkeypatch, 1024)
    windows = analysis.analyse_plane(luma, qt, CONFIG, search="fast")
    for a, b in zip(whole, windows):
        for name in ("mean", "scale", "candidate", "syy", "sxy", "sxx"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_fast_files_are_ordinary_files_close_to_exhaustive_ones(photo, indexed):
    exhaustive = compress(photo, "pifs", 4)
    fast = compress(photo, "pifs", 4, search="fast")
    decoded = decompress(fast)
    assert decoded.shape == photo.shape
    gap = float(psnr(decompress(exhaustive), photo)) - float(psnr(decoded, photo))
    assert gap < 0.3
    assert len(fast) < 1.1 * len(exhaustive)


def test_bad_search_choices_are_refused(photo):
    with pytest.raises(ConfigurationError, match="search must be one of"):
        compress(photo, "pifs", 4, search="quick")
    with pytest.raises(ConfigurationError, match="pifs codec only"):
        compress(photo, "neural", search="fast")


def test_fast_analyses_report_the_fits_of_the_candidates_they_name(luma, indexed):
    """The clustered search names (domain, isometry) itself; as candidate numbers of the level's
    operator they must fit exactly as reported (sxy, sxx of that candidate)."""
    qt = QuadtreeCollage(luma.shape, CONFIG.block_sizes, CONFIG.domain_strides)
    x = luma.reshape(1, 1, *luma.shape)
    for op, la in zip(qt.operators, analysis.analyse_plane(luma, qt, CONFIG, search="fast")):
        fitted = la.sxx > 0
        ranges = op.ranges(x)[0, 0][fitted]
        chosen = op.candidates(x)[0, 0][la.candidate[fitted]]
        torch.testing.assert_close(((ranges - ranges.mean(-1, keepdim=True)) * chosen).sum(-1), la.sxy[fitted],
                                   rtol=1e-4, atol=1e-2)
        torch.testing.assert_close(chosen.pow(2).sum(-1), la.sxx[fitted], rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("search", ["fast", "exhaustive"])
def test_files_do_not_depend_on_the_thread_count(photo, indexed, search):
    before = torch.get_num_threads()
    try:
        files = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            files.append(compress(photo, "pifs", 4, search=search))
    finally:
        torch.set_num_threads(before)
    assert files[0] == files[1]
