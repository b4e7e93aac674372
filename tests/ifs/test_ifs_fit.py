"""Fitting by the collage theorem: contractive results, lower collage loss, recovery, clear errors on bad clouds."""

import numpy as np
import pytest
import torch

from neural_collages.errors import ConfigurationError
from neural_collages.ifs.distances import chamfer, nearest
from neural_collages.ifs.fit import (FitOptions, Normalisation, coverage_probabilities, fit_ifs, random_ifs)
from neural_collages.ifs.gallery import FERN, SIERPINSKI, TETRAHEDRON, gallery, sample

QUICK = FitOptions(restarts=3, keep=1, screen_steps=20, steps=60, refine_steps=20, polish_steps=10, eval_points=4000)


def test_chamfer_is_exact_and_symmetric():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(300, 2, generator=g), torch.rand(500, 2, generator=g)
    d = torch.cdist(a.double(), b.double())
    expected = 0.5 * (float(d.min(1).values.mean()) + float(d.min(0).values.mean()))
    assert chamfer(a, b) == pytest.approx(expected, rel=1e-12)
    assert chamfer(b, a) == pytest.approx(expected, rel=1e-12)
    dist, idx = nearest(a, b)
    assert np.allclose(dist, d.min(1).values.numpy()) and np.array_equal(idx, d.argmin(1).numpy())


def test_normalisation_round_trips_points_and_maps():
    cloud = sample(FERN, 2000).double()
    norm = Normalisation.of(cloud)
    unit = norm.to_unit(cloud)
    assert float(unit.min()) >= -1e-9 and float(unit.max()) <= 1 + 1e-9
    torch.testing.assert_close(norm.from_unit(unit), cloud)
    g = torch.Generator().manual_seed(1)
    A, t = torch.rand(3, 2, 2, generator=g, dtype=torch.float64) * 0.4, torch.rand(3, 2, generator=g, dtype=torch.float64)
    Ac, tc = norm.maps_to_cloud(A, t)
    # w_cloud(x) = from_unit(w_unit(to_unit(x)))
    mapped = torch.einsum("nij,mj->nmi", A, unit[:10]) + t[:, None]
    torch.testing.assert_close(torch.einsum("nij,mj->nmi", Ac, cloud[:10]) + tc[:, None], norm.from_unit(mapped))


def test_fitting_is_contractive_and_lowers_the_collage_loss():
    cloud = sample(SIERPINSKI, 20_000)
    result = fit_ifs(cloud, 3, QUICK)
    assert result.model.contraction_bound() < QUICK.s_max
    x = Normalisation.of(cloud).to_unit(cloud.double()).float()
    start = random_ifs(3, 2, x, QUICK.s_max, torch.Generator().manual_seed(0))
    from neural_collages.ifs.distances import collage_loss
    with torch.no_grad():
        before = float(collage_loss(*start()[:2], x[:4096]))
    assert result.collage_loss < 0.5 * before
    A, t, p = result.maps_in_cloud_coordinates()
    assert A.shape == (3, 2, 2) and torch.allclose(p.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert result.sample(1000).shape == (1000, 2)


def test_coverage_probabilities_recover_the_ferns_probabilities():
    cloud = sample(FERN, 50_000)
    A, t, p = FERN.maps()
    estimate = coverage_probabilities(A, t, cloud[:8000])
    torch.testing.assert_close(estimate, p, atol=0.02, rtol=0)


@pytest.mark.slow
def test_the_sierpinski_triangle_is_recovered_to_its_noise_floor():
    (entry,) = gallery(["sierpinski"], points=100_000)
    assert entry.ratio < 1.5, entry.summary()
    assert entry.contraction_bound < 0.95


@pytest.mark.parametrize("cloud, maps, match", [
    (torch.full((100, 2), float("nan")), 3, "NaN"),
    (torch.rand(2, 2), 3, "at least"),
    (torch.rand(100, 4), 3, "shape"),
    (torch.rand(100), 3, "shape"),
    (torch.zeros(100, 2), 3, "no extent"),
    ("points", 3, "array"),
    (torch.rand(100, 2), 0, "maps"),
])
def test_bad_clouds_give_one_clear_error(cloud, maps, match):
    with pytest.raises(ConfigurationError, match=match):
        fit_ifs(cloud, maps, QUICK)


@pytest.mark.slow
def test_the_fern_is_recovered_within_twice_its_noise_floor():
    # Issue 11's target; random restarts alone reached 3.7x (wrong basin), self-cover starts and
    # reseeding (the stem) find the fern's own maps.
    (entry,) = gallery(["fern"], points=100_000)
    assert entry.ratio < 2.0, entry.summary()
    assert entry.contraction_bound < 0.95


@pytest.mark.parametrize("bad", [dict(restarts=-1), dict(steps=-1), dict(lr=float("inf")), dict(s_max=1.5),
                                 dict(hausdorff_weight=-1), dict(subsample=2), dict(self_cover=1),
                                 dict(reseed_rounds=-1)])
def test_bad_fit_options(bad):
    with pytest.raises(ConfigurationError):
        FitOptions(**bad)


def test_a_3d_cloud_fits_with_3d_maps():
    result = fit_ifs(sample(TETRAHEDRON, 5000), 4, QUICK)
    A, t, _ = result.maps()
    assert A.shape == (4, 3, 3) and t.shape == (4, 3) and result.model.contraction_bound() < QUICK.s_max
