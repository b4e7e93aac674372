"""The crop sampler: shapes, reproducibility per (seed, rank), resume, augmentation, area weighting."""

import pytest
import torch

from neural_collages.errors import ConfigurationError
from neural_collages.training.sampler import CropSampler


def _images():
    g = torch.Generator().manual_seed(0)
    sizes = ((40, 50), (64, 33), (20, 90))
    return [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in sizes]


def test_sampler_shapes_and_range():
    sampler = CropSampler(_images(), crop=24, seed=0)
    batch = sampler.sample(16)
    assert batch.shape == (16, 3, 24, 24) and batch.dtype == torch.float32
    assert float(batch.min()) >= 0.0 and float(batch.max()) <= 1.0
    # Values are exact multiples of 1/255: crops are copied, not interpolated.
    assert torch.allclose((batch * 255).round(), batch * 255, atol=1e-4)
    with pytest.raises(ConfigurationError):
        sampler.sample(0)


def test_sampler_reproducible_and_distinct_per_rank():
    a = CropSampler(_images(), crop=16, seed=7, rank=0, world_size=2)
    b = CropSampler(_images(), crop=16, seed=7, rank=0, world_size=2)
    c = CropSampler(_images(), crop=16, seed=7, rank=1, world_size=2)
    first = a.sample(8)
    assert torch.equal(first, b.sample(8))
    assert not torch.equal(first, c.sample(8))
    assert not torch.equal(first, CropSampler(_images(), crop=16, seed=8, rank=0, world_size=2).sample(8))
    with pytest.raises(ConfigurationError):
        CropSampler(_images(), crop=16, seed=7, rank=2, world_size=2)


def test_sampler_state_dict_resume(tmp_path):
    sampler = CropSampler(_images(), crop=16, seed=3)
    sampler.sample(5)
    torch.save(sampler.state_dict(), tmp_path / "state.pt")
    expected = sampler.sample(6)

    resumed = CropSampler(_images(), crop=16, seed=3)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert torch.equal(resumed.sample(6), expected)

    other_rank = CropSampler(_images(), crop=16, seed=3, rank=1, world_size=2)
    with pytest.raises(ConfigurationError):
        other_rank.load_state_dict(sampler.state_dict())


def test_sampler_skips_small_images():
    images = _images()  # smallest sides: 40, 33, 20
    assert len(CropSampler(images, crop=30, seed=0)) == 2
    assert len(CropSampler(images, crop=34, seed=0)) == 1
    with pytest.raises(ConfigurationError, match="smaller crop"):
        CropSampler(images, crop=41, seed=0)
    with pytest.raises(ConfigurationError):
        CropSampler([images[0].float()], crop=8, seed=0)


def test_sampler_draws_all_flips_and_rotations():
    # One 8x8 image with all-distinct pixels and crop 8: the only randomness left is the dihedral
    # transform, and all 8 flip/rotation combinations must show up (and nothing else).
    image = torch.arange(3 * 64, dtype=torch.uint8).reshape(3, 8, 8)
    transforms = {
        torch.rot90(im, k, dims=(-2, -1)).numpy().tobytes() for im in (image, image.flip(-1)) for k in range(4)
    }
    assert len(transforms) == 8
    batch = CropSampler([image], crop=8, seed=0).sample(200)
    seen = {(crop * 255).round().to(torch.uint8).numpy().tobytes() for crop in batch}
    assert seen == transforms


def test_sampler_weights_by_area_and_covers_positions():
    big = torch.zeros(3, 64, 64, dtype=torch.uint8)
    small = torch.full((3, 8, 8), 255, dtype=torch.uint8)
    batch = CropSampler([big, small], crop=8, seed=0).sample(2000)
    share_small = float((batch.mean(dim=(1, 2, 3)) == 1.0).float().mean())
    assert abs(share_small - 64 / (64 * 64 + 64)) < 0.01  # area-weighted: ~1.5 %

    # Every crop position of a 1-row ramp image is reachable, including the last one.
    ramp = torch.arange(20, dtype=torch.uint8).repeat(3, 4, 1)  # (3, 4, 20)
    crops = CropSampler([ramp], crop=4, seed=1).sample(400)
    corners = {int(round(float(c.min()) * 255)) for c in crops}
    assert corners == set(range(17))


