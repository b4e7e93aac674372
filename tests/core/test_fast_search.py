"""The approximate (short-list) search: true fits of the candidates it names, close to the exact search."""

import pytest
import torch
import torch.nn.functional as F

from neural_collages.core.fast_search import ShortlistSettings, dct_features, shortlist_affine_matches
from neural_collages.core.search import best_affine_matches
from neural_collages.errors import ConfigurationError

pytest.importorskip("faiss")
#: Always use the index, however small the problem.
INDEXED = ShortlistSettings(exact_below=0, list_size=64)


def _blocks(count: int, side: int, seed: int) -> torch.Tensor:
    """Centred blocks of a smooth random field: correlated like image blocks, not white noise."""
    g = torch.Generator().manual_seed(seed)
    field = F.avg_pool2d(torch.randn(1, 1, count // 16 * side + 12, 16 * side + 12, generator=g), 5, stride=1)
    blocks = field[0, 0, : count // 16 * side, : 16 * side].unfold(0, side, side).unfold(1, side, side)
    blocks = blocks.reshape(-1, side * side) * 40
    return blocks - blocks.mean(1, keepdim=True)


def _fit_error(y, x, s):
    return (y - s[:, None] * x).pow(2).sum(1)


@pytest.mark.parametrize("side", [4, 8])
def test_every_result_is_the_exact_fit_of_the_candidate_it_names(side):
    ranges, cands = _blocks(512, side, 0), _blocks(4096, side, 1)
    idx, s, err = shortlist_affine_matches(ranges, cands, 1.2, INDEXED)
    assert s.abs().max() <= 1.2 + 1e-6
    torch.testing.assert_close(err, _fit_error(ranges, cands[idx], s), rtol=1e-4, atol=1e-2)
    # The optimal scale for that candidate (clamped): no better s exists for the chosen block.
    x = cands[idx]
    best_s = ((ranges * x).sum(1) / x.pow(2).sum(1)).clamp(-1.2, 1.2)
    torch.testing.assert_close(s, best_s, rtol=1e-4, atol=1e-5)


def test_it_is_never_better_and_rarely_much_worse_than_the_exact_search():
    ranges, cands = _blocks(1024, 4, 2), _blocks(8192, 4, 3)
    _, _, exact = best_affine_matches(ranges, cands, 1.2)
    _, _, approx = shortlist_affine_matches(ranges, cands, 1.2, INDEXED)
    assert bool((approx >= exact * (1 - 1e-4) - 1e-3).all())
    assert approx.sum() / exact.sum() < 1.15
    # A short list as long as the candidate pool finds the exact optimum.
    full = ShortlistSettings(exact_below=0, list_size=64, shortlist=2048, probes=1 << 10)
    _, _, found = shortlist_affine_matches(ranges, cands[:1024], 1.2, full)
    _, _, exact_small = best_affine_matches(ranges, cands[:1024], 1.2)
    torch.testing.assert_close(found, exact_small, rtol=1e-4, atol=1e-2)


def test_cheap_problems_take_the_exact_search_and_results_repeat():
    ranges, cands = _blocks(64, 4, 4), _blocks(256, 4, 5)
    for a, b in zip(shortlist_affine_matches(ranges, cands, 1.2), best_affine_matches(ranges, cands, 1.2)):
        assert torch.equal(a, b)
    first = shortlist_affine_matches(ranges, _blocks(4096, 4, 6), 1.2, INDEXED)
    again = shortlist_affine_matches(ranges, _blocks(4096, 4, 6), 1.2, INDEXED)
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_the_features_are_orthonormal_low_frequency_dct_atoms_without_dc():
    atoms = dct_features(8, 16).double()
    torch.testing.assert_close(atoms.T @ atoms, torch.eye(16, dtype=torch.float64), atol=1e-6, rtol=0)
    assert atoms.sum(0).abs().max() < 1e-5  # orthogonal to a constant block
    ramp = torch.arange(8.0).repeat(8, 1)  # varies along x only: its energy is in the first atoms
    coeffs = ramp.reshape(-1) @ dct_features(8, 2)
    assert coeffs.abs().max() > 10 and min(coeffs.abs()) < 1e-4


def test_bad_settings_and_blocks_are_refused():
    with pytest.raises(ConfigurationError, match="shortlist"):
        ShortlistSettings(shortlist=0)
    with pytest.raises(ConfigurationError, match="square"):
        shortlist_affine_matches(torch.randn(64, 12), torch.randn(4096, 12), 1.2, INDEXED)
    with pytest.raises(ConfigurationError, match="no candidates"):
        shortlist_affine_matches(torch.randn(4, 16), torch.zeros(0, 16), 1.2)
