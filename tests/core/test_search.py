import pytest
import torch

from neural_collages import CollageOperator, contraction_bound
from neural_collages.core.search import best_affine_matches, exhaustive_search


def brute_force(op, image, s_max):
    """Try every candidate for every range with an explicit clamped least-squares fit."""
    cands = op.candidates(image)[0].detach()  # (C, D, P)
    ranges = op.ranges(image)[0]  # (C, R, P)
    C, D, P = cands.shape
    groups = [[c] for c in range(C)] if op.channel_maps == "per_channel" else [list(range(C))]
    result = []
    for chans in groups:
        rows = []
        for r in range(ranges.shape[1]):
            y = ranges[chans, r]  # (Cg, P)
            best = (float("inf"), None, None)
            for d in range(D):
                x = cands[chans, d]
                xc, yc = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
                sxx = float((xc * xc).sum())
                s = 0.0 if sxx <= 1e-12 else float((xc * yc).sum()) / sxx
                s = max(-s_max, min(s_max, s))
                err = float(((yc - s * xc) ** 2).sum())
                if err < best[0] - 1e-9:
                    best = (err, d, s)
            rows.append(best)
        result.append(rows)
    return result


@pytest.mark.parametrize("channel_maps", ["per_channel", "shared"])
def test_exhaustive_search_equals_brute_force(channel_maps):
    torch.manual_seed(0)
    op = CollageOperator((8, 8), channels=2, range_size=2, domain_size=[4, 8], domain_stride=[2, 8],
                         isometries=range(8), aux_patches=2, channel_maps=channel_maps, s_max=0.8).double()
    # A smooth image plus noise, so fits are neither trivial nor all clamped.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 8), torch.linspace(0, 1, 8), indexing="ij")
    image = torch.stack([torch.sin(3 * xx + yy), xx * yy]).unsqueeze(0).double()
    image = image + 0.05 * torch.randn(image.shape, dtype=torch.float64)
    # Tiny chunks exercise the chunked bookkeeping.
    result = exhaustive_search(op, image, chunk_elements=37)
    expected = brute_force(op, image, 0.8)
    for g, rows in enumerate(expected):
        for r, (err, d, s) in enumerate(rows):
            assert result.error[0, g, r].item() == pytest.approx(err, abs=1e-9)
            # The chosen candidate may differ only on exact ties of the error.
            assert int(result.code.index[0, g, r, 0]) == d or result.error[0, g, r].item() == pytest.approx(err)
            if int(result.code.index[0, g, r, 0]) == d:
                assert result.code.scale[0, g, r, 0].item() == pytest.approx(s, abs=1e-9)
    # The stored error is what the code actually achieves in one step from the image itself.
    step_err = (op.ranges(op.step(image, result.code)) - op.ranges(image)).pow(2).sum(-1)  # (1, C, R)
    if channel_maps == "shared":
        step_err = step_err.sum(1, keepdim=True)
    torch.testing.assert_close(step_err, result.error)


def test_search_result_is_a_contractive_code_whose_fixed_point_approximates_the_image():
    g = torch.Generator().manual_seed(1)
    base = torch.rand(1, 1, 4, 4, generator=g, dtype=torch.float64)
    image = torch.nn.functional.interpolate(base, size=(16, 16), mode="bilinear", align_corners=False)
    op = CollageOperator((16, 16), channels=1, range_size=2, domain_size=4, domain_stride=2,
                         isometries=range(8)).double()
    result = exhaustive_search(op, image)
    assert float(contraction_bound(result.code)) <= op.s_max
    decoded, stats = op.decode(result.code, tol=1e-9, max_steps=500)
    assert stats.converged
    # Collage theorem: the decode is within the collage error / (1 - s) of the image.
    bound = op.collage_error_bound(image, result.code)
    assert (decoded - image).abs().max() <= bound[0] + 1e-9
    mse = (decoded - image).pow(2).mean().item()
    assert mse < 1e-3 * image.var().item() + 1e-6


def test_best_affine_matches_handles_flat_candidates():
    ranges = torch.tensor([[1.0, -1.0], [0.0, 0.0]])
    candidates = torch.tensor([[0.0, 0.0], [2.0, -2.0]])
    index, scale, error = best_affine_matches(ranges, candidates, 0.9)
    assert index.tolist() == [1, 0]
    assert scale[0].item() == pytest.approx(0.5) and scale[1].item() == 0.0
    assert error.tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


@pytest.mark.parametrize("s_max", [0.3, 1.2])
def test_best_affine_matches_equals_dense_scoring_when_clamping_is_common(s_max):
    g = torch.Generator().manual_seed(3)
    ranges = torch.randn(300, 16, generator=g, dtype=torch.float64)
    ranges -= ranges.mean(1, keepdim=True)
    # Candidates of very different norms, so many winners need clamping at small s_max.
    candidates = torch.randn(2000, 16, generator=g, dtype=torch.float64) * torch.rand(2000, 1, generator=g, dtype=torch.float64) ** 3
    candidates -= candidates.mean(1, keepdim=True)
    candidates[:5] = 0  # flat candidates
    index, scale, error = best_affine_matches(ranges, candidates, s_max, chunk_elements=300 * 128)
    sxy = ranges @ candidates.T
    sxx = candidates.pow(2).sum(1)
    s = torch.where(sxx > 1e-12, sxy / sxx.clamp(min=1e-12), torch.zeros_like(sxy)).clamp(-s_max, s_max)
    err = ranges.pow(2).sum(1, keepdim=True) - 2 * s * sxy + s * s * sxx
    best_err, best_idx = err.min(1)
    torch.testing.assert_close(error, best_err.clamp(min=0))
    torch.testing.assert_close(scale, s.gather(1, index[:, None])[:, 0])
    assert (index == best_idx).float().mean() > 0.99  # ties aside, the same candidates
