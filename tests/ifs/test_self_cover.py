"""Self-cover starts: the cloud's largest copy of itself, moment maps onto pieces, reseeding a missing map."""

import math

import numpy as np
import pytest
import torch

from neural_collages.errors import ConfigurationError
from neural_collages.ifs import self_cover
from neural_collages.ifs.distances import chamfer, nearest_index, query_index
from neural_collages.ifs.fit import FitOptions, Normalisation, fit_ifs
from neural_collages.ifs.gallery import FERN, RING, SIERPINSKI, sample


def _unit(example, points, seed=0):
    cloud = sample(example, points, seed=seed).double()
    return Normalisation.of(cloud).to_unit(cloud).numpy()


def _fern_unit_maps(x_cloud):
    """The fern's true maps in the unit box of ``x_cloud``'s normalisation."""
    norm = Normalisation.of(x_cloud)
    A, t, _ = FERN.maps()
    c, s = torch.tensor(norm.centre, dtype=torch.float64), norm.scale
    half = torch.full((2,), 0.5, dtype=torch.float64)
    t_unit = torch.stack([(-(a @ half) * s + a @ c + b - c) / s + 0.5 for a, b in zip(A, t)])
    return A.numpy(), t_unit.numpy()


def test_the_largest_self_map_of_the_sierpinski_triangle_is_a_half_scale_copy_inside_it():
    x = _unit(SIERPINSKI, 20_000)
    rng = np.random.default_rng(0)
    index = nearest_index(x)
    gap = self_cover.spacing(x, index, rng)
    maps = self_cover.largest_self_maps(x, index, gap, 0.95, rng)
    assert maps
    for A, t in maps:
        sv = np.linalg.svd(A, compute_uv=False)
        assert sv == pytest.approx([0.5, 0.5], abs=1e-9)  # the scales tried go 0.9, 0.85, ...: 0.5 is the first inside
        assert query_index(index, x @ A.T + t)[0].mean() < self_cover.INSIDE * gap


def test_a_ring_has_no_smaller_copy_of_itself():
    x = _unit(RING, 20_000)
    rng = np.random.default_rng(0)
    index = nearest_index(x)
    assert self_cover.largest_self_maps(x, index, self_cover.spacing(x, index, rng), 0.95, rng) == []


def test_a_moment_map_recovers_an_affine_copy():
    x = _unit(FERN, 20_000)
    rng = np.random.default_rng(1)
    angle = math.radians(40)  # on the 10-degree grid: the moments then give the map exactly
    Q = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) @ np.diag([1.0, -1.0])
    cov = np.cov(x.T)
    L_x = np.linalg.cholesky(cov)
    A_true = 0.3 * Q  # any A with A Σ Aᵀ = L_P L_Pᵀ is L_P Q' L_x⁻¹ for one orthogonal Q'
    t_true = np.array([0.2, 0.6])
    piece = x @ A_true.T + t_true
    A, t = self_cover.moment_map(piece, x.mean(0), np.linalg.inv(L_x), x[rng.choice(len(x), 1000)], 0.95,
                                 self_cover.orthogonal_grid(2))
    image = x @ A.T + t
    assert chamfer(image, piece) < 0.01 * np.ptp(piece, 0).max()
    assert np.allclose(A @ cov @ A.T, A_true @ cov @ A_true.T, atol=1e-9)  # the covariance is matched exactly


def test_orthogonal_grids_are_orthogonal_and_distinct():
    for d, n in ((2, 72), (3, 48)):
        grid = self_cover.orthogonal_grid(d)
        assert len(grid) == n
        for Q in grid:
            assert np.allclose(Q @ Q.T, np.eye(d))
        assert len({tuple(np.round(Q, 9).ravel()) for Q in grid}) == n


def test_reseeding_puts_a_lost_map_back():
    # The fern's true maps with the stem map collapsed to a point far from the stem: the reseeds
    # must score better, and the best must be a thin map near the stem.
    cloud = sample(FERN, 50_000).double()
    A, t = _fern_unit_maps(cloud)
    x = Normalisation.of(cloud).to_unit(cloud).numpy()
    rng = np.random.default_rng(0)
    cover = self_cover.prepare(x, 0.95, rng)
    probe = x[rng.choice(len(x), 8000, replace=False)]

    def score(A_, t_):
        return chamfer(np.concatenate([x[:4000] @ a.T + b for a, b in zip(A_, t_)]), probe)

    broken_A, broken_t = A.copy(), t.copy()
    broken_A[0], broken_t[0] = 0.001 * np.eye(2), np.array([0.7, 0.3])
    proposals = self_cover.reseeds(cover, broken_A, broken_t, score)
    assert proposals
    best_A, best_t = proposals[0]
    assert score(best_A, best_t) < score(broken_A, broken_t)
    replaced = [j for j in range(4) if not np.allclose(best_A[j], broken_A[j]) or not np.allclose(best_t[j], broken_t[j])]
    assert replaced == [0]
    sv = np.linalg.svd(best_A[0], compute_uv=False)
    assert sv[1] < 0.2 * sv[0]  # a thin map, like the stem's (rank 1)
    stem_top = A[0] @ x.mean(0) + t[0]
    assert np.linalg.norm(best_A[0] @ x.mean(0) + best_t[0] - stem_top) < 0.1


def test_without_restarts_a_cloud_needs_a_self_similar_copy():
    ring = sample(RING, 5000)
    with pytest.raises(ConfigurationError, match="self-similar"):
        fit_ifs(ring, 3, FitOptions(restarts=0))
    with pytest.raises(ConfigurationError, match="restarts"):
        fit_ifs(ring, 3, FitOptions(restarts=0, self_cover=False))
