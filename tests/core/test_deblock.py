"""Deblocking: borders found from the partition, small steps ramped, edges kept, the same at every scale."""

import pytest
import torch
import torch.nn.functional as F

from neural_collages.core.deblock import border_masks, deblock
from neural_collages.errors import ConfigurationError


def _blocks(h=32, w=48, cell=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(h // cell, w // cell, generator=g) * 40
    x = means.repeat_interleave(cell, 0).repeat_interleave(cell, 1) + torch.rand(h, w, generator=g) * 2
    leaves = [(y, x0, cell) for y in range(0, h, cell) for x0 in range(0, w, cell)]
    return x, leaves


def test_border_masks_follow_the_leaves_and_skip_the_image_edges():
    # An 8-px leaf at the top left, 4-px leaves elsewhere, on a 8x12 image of 4-px units.
    leaves = [(0, 0, 8), (0, 8, 4), (4, 8, 4)]
    vertical, horizontal = border_masks(leaves, (8, 12), 4)
    assert vertical.tolist() == [[False, False, True], [False, False, True]]  # x = 8 only: not inside the 8-px leaf
    assert horizontal.tolist() == [[False, False, False], [False, False, True]]  # y = 4 under the 4-px leaves
    with pytest.raises(ConfigurationError):
        border_masks(leaves, (9, 12), 4)


@pytest.mark.parametrize("scale", [2, 3, 5])
@pytest.mark.parametrize("width", [1, 2])
def test_the_filtered_zoom_pools_to_the_filtered_1x_plane(scale, width):
    x, leaves = _blocks()
    zoom = x.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    one = deblock(x, leaves, 1, 4, width, 1.0, 20.0)
    many = deblock(zoom, leaves, scale, 4, width, 1.0, 20.0)
    assert not torch.equal(one, x)  # something was filtered (and some steps above 20 were not)
    torch.testing.assert_close(F.avg_pool2d(many[None, None], scale)[0, 0], one, atol=1e-4, rtol=0)


def test_small_steps_become_ramps_edges_stay_and_band_sums_are_kept():
    x = torch.zeros(8, 16)
    x[:, 8:] = 10.0  # one small step at x = 8
    leaves = [(y, x0, 4) for y in (0, 4) for x0 in (0, 4, 8, 12)]
    out = deblock(x, leaves, 1, 4, 2, 1.0, 16.0)
    row = out[0]
    assert torch.all(row[6:10].diff() > 0) and row[5] == 0 and row[10] == 10  # a ramp over 4 pixels only
    assert torch.allclose(out.sum(), x.sum())  # ramps move values across the border, not in total
    assert torch.equal(deblock(x, leaves, 1, 4, 2, 1.0, 9.0), x)  # a step above the threshold is an edge
    flat = torch.full((8, 16), 7.0)
    assert torch.equal(deblock(flat, leaves, 1, 4, 2, 1.0, 16.0), flat)
    same = x.clone()
    assert deblock(same, leaves, 1, 4, 2, 1.0, 16.0, in_place=True) is same and torch.equal(same, out)


@pytest.mark.parametrize("kwargs", [{"width": 0}, {"width": 3}, {"alpha": 1.5}, {"alpha": -0.1}, {"threshold": -1.0}])
def test_bad_filter_settings_are_refused(kwargs):
    x, leaves = _blocks()
    settings = {"width": 1, "alpha": 1.0, "threshold": 8.0, **kwargs}
    with pytest.raises(ConfigurationError):
        deblock(x, leaves, 1, 4, **settings)
