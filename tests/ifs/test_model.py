"""IFS maps: contractive by construction, exact round trips of explicit maps, clear configuration errors."""

import math

import pytest
import torch

from neural_collages.errors import ConfigurationError
from neural_collages.ifs.distances import nearest
from neural_collages.ifs.gallery import FERN, SIERPINSKI, TETRAHEDRON, sample
from neural_collages.ifs.model import (IFS, apply_maps, check_maps, largest_singular_values, maps_from_parameters,
                                       num_map_parameters, rotation, rotation_log)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("s_max", [0.3, 0.9])
def test_every_map_is_contractive_whatever_the_parameters(dim, s_max):
    g = torch.Generator().manual_seed(dim)
    model = IFS(5, dim, s_max=s_max, generator=g)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 20)  # far outside any sensible range
    A, _, p = model()
    assert float(largest_singular_values(A).max()) <= s_max + 1e-6
    assert model.contraction_bound() <= s_max + 1e-6
    assert torch.allclose(p.sum(), torch.tensor(1.0)) and bool((p > 0).all())
    params = torch.randn(7, 4, num_map_parameters(dim), generator=g) * 20
    A, t = maps_from_parameters(params, dim, s_max)
    assert A.shape == (7, 4, dim, dim) and t.shape == (7, 4, dim)
    assert float(largest_singular_values(A).max()) <= s_max + 1e-6


@pytest.mark.parametrize("classic", [FERN, SIERPINSKI, TETRAHEDRON], ids=lambda c: c.name)
def test_from_maps_reproduces_the_given_maps(classic):
    A, t, p = classic.maps()
    model = IFS.from_maps(A, t, p)
    A2, t2, p2 = model.maps()
    torch.testing.assert_close(A2.double(), A, atol=1e-5, rtol=0)
    torch.testing.assert_close(t2.double(), t, atol=1e-6, rtol=0)
    torch.testing.assert_close(p2.double(), p, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dim", [2, 3])
def test_rotation_log_inverts_rotation(dim):
    g = torch.Generator().manual_seed(0)
    k = dim * (dim - 1) // 2
    params = (torch.rand(50, k, generator=g, dtype=torch.float64) * 2 - 1) * (math.pi * 0.99 / math.sqrt(k))
    R = rotation(params, dim)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(dim, dtype=torch.float64).expand_as(R))
    torch.testing.assert_close(rotation(rotation_log(R), dim), R, atol=1e-9, rtol=0)


def test_the_ferns_true_ifs_has_near_zero_collage_loss_on_its_own_attractor():
    # The collage theorem for sets: the attractor X satisfies X = ∪ w_i(X), so every point of the
    # collage lies on the cloud; perturbed maps do not.
    cloud = sample(FERN, 100_000)
    A, t, _ = FERN.maps()
    extent = float((cloud.max(0).values - cloud.min(0).values).max())
    spill = nearest(apply_maps(A, t, cloud[:20_000].double()).numpy(), cloud.double().numpy())[0].mean() / extent
    worse = t.clone()
    worse[1, 0] += 0.5  # the main frond moved sideways by 5 % of the fern's height
    spill_worse = nearest(apply_maps(A, worse, cloud[:20_000].double()).numpy(), cloud.double().numpy())[0].mean()
    assert spill < 1e-3
    assert spill_worse / extent > 3 * spill


@pytest.mark.parametrize("bad", [
    dict(num_maps=0), dict(num_maps=65), dict(num_maps=2.5), dict(dim=4), dict(dim=True), dict(s_max=1.0),
    dict(s_max=float("nan")), dict(probabilities="uniform"), dict(init_scale=0.99),
])
def test_bad_configurations_are_configuration_errors(bad):
    kwargs = dict(num_maps=3, dim=2, s_max=0.9)
    kwargs.update(bad)
    with pytest.raises(ConfigurationError):
        IFS(**kwargs)


def test_check_maps_refuses_non_contractive_or_malformed_maps():
    A, t, p = SIERPINSKI.maps()
    check_maps(A, t, p)
    with pytest.raises(ConfigurationError, match="not contractive"):
        check_maps(A * 2.1, t)
    with pytest.raises(ConfigurationError):
        check_maps(A, t[:, :1])
    with pytest.raises(ConfigurationError):
        check_maps(A.clone().fill_(float("nan")), t)
    with pytest.raises(ConfigurationError):
        check_maps(A, t, torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ConfigurationError):
        IFS.from_maps(A * 1.9, t, s_max=0.9)
