"""The chaos game: reproducible with a seed, points on the attractor, stable statistics; density images."""

import pytest
import torch

from neural_collages.errors import ConfigurationError
from neural_collages.ifs.distances import chamfer, nearest
from neural_collages.ifs.gallery import FERN, SIERPINSKI, TETRAHEDRON, sample
from neural_collages.ifs.model import apply_maps
from neural_collages.ifs.render import chaos_game, density, density_image, project


def test_the_same_seed_gives_the_same_points_another_seed_other_points():
    A, t, p = FERN.maps()
    a = chaos_game(A, t, p, 5000, seed=3)
    assert torch.equal(a, chaos_game(A, t, p, 5000, seed=3))
    assert not torch.equal(a, chaos_game(A, t, p, 5000, seed=4))
    assert a.shape == (5000, 2) and a.dtype == torch.float32


@pytest.mark.parametrize("classic", [SIERPINSKI, TETRAHEDRON], ids=lambda c: c.name)
def test_points_lie_on_the_attractor(classic):
    # The Sierpinski triangle and tetrahedron lie in the simplex of their vertices, and the
    # attractor is invariant: the images of its points under every map are again near points.
    x = sample(classic, 50_000)
    A, t, _ = classic.maps()
    vertices = torch.linalg.solve(torch.eye(classic.dim, dtype=torch.float64) - A, t.unsqueeze(-1)).squeeze(-1)
    lo, hi = vertices.min(0).values, vertices.max(0).values
    assert bool(((x.double() >= lo - 1e-5) & (x.double() <= hi + 1e-5)).all())
    spill = nearest(apply_maps(A, t, x[:5000].double()).numpy(), x.double().numpy())[0]
    assert float(spill.mean()) < 0.01


def test_statistics_are_stable_across_seeds():
    A, t, p = FERN.maps()
    a, b = chaos_game(A, t, p, 100_000, seed=0), chaos_game(A, t, p, 100_000, seed=1)
    torch.testing.assert_close(a.mean(0), b.mean(0), atol=0.02, rtol=0)
    torch.testing.assert_close(a.std(0), b.std(0), atol=0.02, rtol=0)
    far = chaos_game(A * 0.9, t, p, 100_000, seed=1)
    assert chamfer(a, far) > 5 * chamfer(a, b)


def test_density_images_have_the_asked_size_and_colours_in_range():
    x = sample(TETRAHEDRON, 20_000)
    counts = density(x, 64)
    assert counts.shape == (64, 64) and float(counts.sum()) == 20_000  # the view frames every point
    image = density_image(x, 96)
    assert image.shape == (3, 96, 96) and float(image.min()) >= 0 and float(image.max()) <= 1
    assert project(x).shape == (20_000, 2)


@pytest.mark.parametrize("kwargs", [dict(points=0), dict(points=10**9), dict(walkers=0), dict(burn_in=-1),
                                    dict(seed=-1), dict(points=2.5)])
def test_bad_render_arguments(kwargs):
    A, t, p = FERN.maps()
    with pytest.raises(ConfigurationError):
        chaos_game(A, t, p, **{"points": 100, **kwargs})
    with pytest.raises(ConfigurationError):
        density(torch.zeros(3, 2), size=0)
