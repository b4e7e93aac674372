"""The approximate (clustered) search: true fits of the candidates it names, close to the exact search."""

import pytest
import torch
import torch.nn.functional as F

from neural_collages.core.fast_search import (
    ClusterSearchSettings,
    cluster_affine_matches,
    dct_features,
    pose_permutations,
)
from neural_collages.core.partitions import apply_isometry
from neural_collages.core.search import best_affine_matches
from neural_collages.errors import ConfigurationError

pytest.importorskip("faiss")
#: Small lists, so that even small problems are clustered.
CLUSTERED = ClusterSearchSettings(list_size=64)


def _blocks(count: int, side: int, seed: int) -> torch.Tensor:
    """Centred blocks of a smooth random field: correlated like image blocks, not white noise."""
    g = torch.Generator().manual_seed(seed)
    field = F.avg_pool2d(torch.randn(1, 1, count // 16 * side + 12, 16 * side + 12, generator=g), 5, stride=1)
    blocks = field[0, 0, : count // 16 * side, : 16 * side].unfold(0, side, side).unfold(1, side, side)
    blocks = blocks.reshape(-1, side * side) * 40
    return blocks - blocks.mean(1, keepdim=True)


def _posed(domains: torch.Tensor) -> torch.Tensor:
    """Every domain under the 8 isometries, built with ``apply_isometry``: row ``d·8 + g``."""
    side = int(domains.shape[1] ** 0.5)
    cells = domains.reshape(-1, side, side)
    return torch.stack([apply_isometry(cells, g).reshape(len(domains), -1) for g in range(8)], 1).reshape(-1, side * side)


@pytest.mark.parametrize("side", [4, 8])
def test_every_result_is_the_exact_fit_of_the_candidate_it_names(side):
    ranges, domains = _blocks(512, side, 0), _blocks(2048, side, 1)
    d, g, s, err = cluster_affine_matches(ranges, domains, 1.2, CLUSTERED)
    assert s.abs().max() <= 1.2 + 1e-6
    x = _posed(domains)[d * 8 + g]
    torch.testing.assert_close(err, (ranges - s[:, None] * x).pow(2).sum(1), rtol=1e-4, atol=1e-2)
    best_s = ((ranges * x).sum(1) / x.pow(2).sum(1)).clamp(-1.2, 1.2)
    torch.testing.assert_close(s, best_s, rtol=1e-4, atol=1e-5)


def test_it_is_never_better_and_rarely_much_worse_than_the_exact_search():
    ranges, domains = _blocks(1024, 4, 2), _blocks(2048, 4, 3)
    _, _, exact = best_affine_matches(ranges, _posed(domains), 1.2)
    _, _, _, approx = cluster_affine_matches(ranges, domains, 1.2, CLUSTERED)
    assert bool((approx >= exact * (1 - 1e-4) - 1e-3).all())
    assert approx.sum() / exact.sum() < 1.15
    # Fewer domains than one list holds: every range tries every pose, the exact optimum.
    _, _, _, found = cluster_affine_matches(ranges, domains[:200], 1.2, ClusterSearchSettings(list_size=256))
    _, _, exact_small = best_affine_matches(ranges, _posed(domains[:200]), 1.2)
    torch.testing.assert_close(found, exact_small, rtol=1e-4, atol=1e-2)


def test_more_probes_find_better_fits_and_results_repeat():
    ranges, domains = _blocks(1024, 4, 4), _blocks(4096, 4, 5)
    few = cluster_affine_matches(ranges, domains, 1.2, ClusterSearchSettings(list_size=64, probes=2))
    many = cluster_affine_matches(ranges, domains, 1.2, ClusterSearchSettings(list_size=64, probes=32))
    assert many[3].sum() < few[3].sum()
    again = cluster_affine_matches(ranges, domains, 1.2, ClusterSearchSettings(list_size=64, probes=2))
    assert all(torch.equal(a, b) for a, b in zip(few, again))


@pytest.mark.parametrize("side", [4, 8, 16])
def test_isometries_act_on_the_features_as_signed_permutations(side):
    atoms, poses = dct_features(side, 4)
    torch.testing.assert_close(atoms.T @ atoms, torch.eye(atoms.shape[1]), atol=1e-5, rtol=0)
    assert atoms.sum(0).abs().max() < 1e-4  # orthogonal to a constant block
    x = torch.randn(5, side, side)
    perm = pose_permutations(side)[0]
    for g in range(8):
        assert torch.equal(poses[g].abs().sum(0), torch.ones(atoms.shape[1]))  # one ±1 per column
        moved = apply_isometry(x, g).reshape(5, -1)
        assert torch.equal(moved, x.reshape(5, -1)[:, perm[g]])
        torch.testing.assert_close(moved @ atoms, (x.reshape(5, -1) @ atoms) @ poses[g].T, atol=1e-4, rtol=0)


def test_pose_bookkeeping_inverts_and_composes():
    perm, inverse, compose = pose_permutations(4)
    x, y = torch.randn(16), torch.randn(16)
    for a in range(8):
        assert torch.equal(x[perm[a]][perm[inverse[a]]], x)
        for b in range(8):
            # <g_b·y, g_a·x> = <y, g_compose[a, b]·x>
            torch.testing.assert_close(y[perm[b]] @ x[perm[a]], y @ x[perm[compose[a, b]]])


def test_bad_settings_and_blocks_are_refused():
    with pytest.raises(ConfigurationError, match="probes"):
        ClusterSearchSettings(probes=0)
    with pytest.raises(ConfigurationError, match="square"):
        cluster_affine_matches(torch.randn(64, 12), torch.randn(4096, 12), 1.2, CLUSTERED)
    with pytest.raises(ConfigurationError, match="no domains"):
        cluster_affine_matches(torch.randn(4, 16), torch.zeros(0, 16), 1.2)
