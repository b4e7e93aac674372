"""The Collage VAE benchmark's measurements: smoothness statistics and the scale-consistency check."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.vae import scales_and_smoothness, smoothness

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vae"))
from vae_helpers import tiny_vae  # noqa: E402


def test_a_blurred_edge_has_a_wider_transition_band_and_the_same_total_variation():
    sharp = torch.zeros(1, 1, 64, 64)
    sharp[..., 16:48, 16:48] = 1.0
    blurred = F.avg_pool2d(F.pad(sharp, (4, 4, 4, 4), mode="replicate"), 9, stride=1)
    a, b = smoothness(sharp), smoothness(blurred)
    assert a["transition_band_share"] == 0.0 and b["transition_band_share"] > 0.05
    # A monotone edge has the same total variation however wide it is (a square: 4 sides of 32 px).
    assert abs(a["total_variation_per_side"] - 2.0) < 1e-6
    assert abs(b["total_variation_per_side"] - 2.0) < 0.05


def test_scale_consistency_is_measured_on_the_same_latents():
    result, means = scales_and_smoothness(tiny_vae(), 2, seed=0, temperature=1.0)
    assert result["consistency_max_abs_fixed_point"] < 1e-5
    assert means[40].shape == (2, 1, 1120, 1120) and means["bicubic"].shape == (2, 1, 1120, 1120)
    assert torch.allclose(F.avg_pool2d(means[10], 10), means[1], atol=0.05)
