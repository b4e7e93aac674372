"""Pooling into the flat candidate buffer: average_pool, aux patches at a scale, domain means."""

import pytest
import torch
import torch.nn.functional as F

from neural_collages.core import pooling
from neural_collages.errors import ConfigurationError
from neural_collages.core.operator import CollageOperator


@pytest.mark.parametrize(
    "kernel, stride",
    [
        ((2, 2), (2, 2)),
        ((2, 2), (1, 1)),
        ((3, 2), (3, 1)),
        ((1, 3), (1, 3)),
        ((4, 4), (2, 4)),  # 16 taps: still the strided-slice path
        ((2, 8), (2, 8)),
        ((5, 4), (5, 4)),  # 20 taps: F.avg_pool2d
        ((6, 6), (3, 2)),
        ((17, 1), (1, 1)),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_average_pool_equals_avg_pool2d(kernel, stride, dtype):
    torch.manual_seed(0)
    z = torch.rand(2, 3, 18, 20, dtype=dtype) * 255
    got = pooling.average_pool(z, kernel, stride)
    want = F.avg_pool2d(z, kernel, stride)
    assert got.shape == want.shape and got.dtype == dtype
    # Summation order differs from avg_pool2d, so agreement is to rounding, not bitwise.
    tol = 1e-12 if dtype == torch.float64 else 2e-4
    torch.testing.assert_close(got, want, atol=tol, rtol=0)


def test_average_pool_with_a_unit_kernel_is_the_identity():
    z = torch.rand(1, 2, 5, 7)
    assert pooling.average_pool(z, (1, 1), (1, 1)) is z


def test_average_pool_is_exact_on_dyadic_values():
    # Small integers summed in any order are exact, and the final scale is a power of two.
    z = torch.randint(0, 256, (2, 1, 8, 8)).double()
    got = pooling.average_pool(z, (2, 2), (2, 2))
    want = z.reshape(2, 1, 4, 2, 4, 2).sum(dim=(3, 5)) / 4
    assert torch.equal(got, want)


def test_average_pool_propagates_gradients_like_avg_pool2d():
    z = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(1, 1, 3, 3, dtype=torch.float64)
    (pooling.average_pool(z, (2, 2), (2, 2)) * weights).sum().backward()
    got = z.grad.clone()
    z.grad = None
    (F.avg_pool2d(z, 2) * weights).sum().backward()
    torch.testing.assert_close(got, z.grad)


# ------------------------------------------------------------------ auxiliary patches


def test_aux_at_scale_reads_a_patch_like_a_domain_cell():
    torch.manual_seed(1)
    patches = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    for scale in (1, 2, 3):
        out = pooling.aux_at_scale(patches, scale, (2, 2), channels=2, centred=False, dtype=torch.float64)
        P = (2 * scale) ** 2
        assert out.shape == (2, 3, P)
        up = patches.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
        want = F.adaptive_avg_pool2d(up, (2 * scale, 2 * scale)).reshape(3, P)
        for c in range(2):  # one-channel patches are shared by every channel
            torch.testing.assert_close(out[c], want)
    centred = pooling.aux_at_scale(patches, 2, (2, 2), channels=1, centred=True, dtype=torch.float64)
    torch.testing.assert_close(centred.mean(-1), torch.zeros(1, 3, dtype=torch.float64), atol=1e-15, rtol=0)


def test_bicubic_aux_patches_are_smooth_and_pool_back_to_the_stored_patches():
    torch.manual_seed(2)
    patches = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    one = pooling.aux_at_scale(patches, 1, (8, 8), 1, centred=True, dtype=torch.float64)
    for scale in (2, 3, 4):
        nearest = pooling.aux_at_scale(patches, scale, (8, 8), 1, centred=True, dtype=torch.float64)
        smooth = pooling.aux_at_scale(patches, scale, (8, 8), 1, True, torch.float64, interpolation="bicubic")
        side = 8 * scale
        pooled = F.avg_pool2d(smooth.reshape(4, 1, side, side), scale).reshape(1, 4, 64)
        torch.testing.assert_close(pooled, one, atol=1e-12, rtol=0)  # the 1x decode cannot tell them apart
        images = {k: v.reshape(4, side, side) for k, v in (("nearest", nearest), ("smooth", smooth))}
        # Gradient energy: enlarged pixels put all of it in steps at the pixel edges.
        energy = {k: float((v[:, :, 1:] - v[:, :, :-1]).pow(2).sum() + (v[:, 1:] - v[:, :-1]).pow(2).sum())
                  for k, v in images.items()}
        assert energy["smooth"] < 0.9 * energy["nearest"]
    with pytest.raises(ConfigurationError):
        pooling.aux_at_scale(patches, 2, (8, 8), 1, True, torch.float64, interpolation="lanczos")


def test_with_aux_interpolation_shares_the_operator_and_changes_only_zoomed_decodes():
    op = CollageOperator(16, channels=1, domain_size=None, aux_patches=3, centred=True)
    smooth = op.with_aux_interpolation("bicubic")
    assert smooth is not op and smooth.aux_patches is op.aux_patches and op.aux_interpolation == "nearest"
    assert smooth.with_aux_interpolation("bicubic") is smooth and op.with_aux_interpolation("nearest") is op
    torch.testing.assert_close(smooth.aux_at_scale(1, torch.float32), op.aux_at_scale(1, torch.float32))
    assert not torch.allclose(smooth.aux_at_scale(2, torch.float32), op.aux_at_scale(2, torch.float32))
    with pytest.raises(ConfigurationError):
        op.with_aux_interpolation("box")


# ------------------------------------------------------------------ domain means

OPERATORS = {
    "aligned": dict(size=(8, 12), channels=1, range_size=2, domain_size=4, isometries=range(8)),
    "overlap": dict(size=(8, 12), channels=2, range_size=2, domain_size=4, domain_stride=(2, 1), isometries=(0, 4)),
    "multiscale": dict(
        size=(12, 8), channels=2, range_size=2, domain_size=[4, (6, 8)], domain_stride=[3, (2, 1)],
        isometries=("identity", "rot180"), aux_patches=2,
    ),
    "whole_image": dict(size=(16, 16), channels=3, range_size=4, domain_size=[8, 16], domain_stride=[4, 16]),
    "rect": dict(size=(6, 8), channels=1, range_size=(3, 2), domain_size=(6, 4), domain_stride=(3, 2)),
}


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("scale", [1, 2, 3])
def test_domain_means_are_the_means_of_the_pooled_candidate_blocks(name, scale):
    torch.manual_seed(2)
    op = CollageOperator(**OPERATORS[name]).double()
    H, W = op.size
    z = torch.rand(2, op.channels, scale * H, scale * W, dtype=torch.float64)
    buffer = op.pooled_buffer(z, scale)
    means = op.domain_means(buffer, scale)
    assert means.shape == (2, op.channels, op.num_domains)
    n_iso = len(op.isometries)
    cand = op.candidates(z, scale)[:, :, : op.num_domains * n_iso]  # (B, C, Nd·n_iso, P), not centred
    want = cand[:, :, ::n_iso].mean(-1)
    torch.testing.assert_close(means, want, atol=1e-13, rtol=0)
    # The mean of a pooled block is the mean of the image pixels under the domain cell.
    direct = []
    for lattice in op.lattices:
        dh, dw = lattice.cell_size
        for y, x in lattice.origins():
            direct.append(z[:, :, scale * y : scale * (y + dh), scale * x : scale * (x + dw)].mean((-2, -1)))
    torch.testing.assert_close(means, torch.stack(direct, -1), atol=1e-13, rtol=0)


def test_domain_means_do_not_include_aux_patches():
    op = CollageOperator(**OPERATORS["multiscale"]).double()
    z = torch.rand(1, 2, 12, 8, dtype=torch.float64)
    with_aux = op.domain_means(op.pooled_buffer(z, 1, include_aux=True))
    without = op.domain_means(op.pooled_buffer(z, 1, include_aux=False))
    assert torch.equal(with_aux, without)


@pytest.mark.parametrize("name", ["overlap", "multiscale", "whole_image"])
def test_pooling_and_domain_means_do_not_depend_on_the_thread_count(name):
    torch.manual_seed(3)
    op = CollageOperator(**OPERATORS[name])
    H, W = op.size
    scale = 4
    z = torch.rand(32, op.channels, scale * H, scale * W)  # large enough for intra-op threads
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            buffer = op.pooled_buffer(z, scale)
            results.append((buffer, op.domain_means(buffer, scale)))
    finally:
        torch.set_num_threads(threads)
    (b1, m1), (b2, m2) = results
    assert torch.equal(b1, b2)
    assert torch.equal(m1, m2)


def test_domain_means_of_an_operator_without_domains_are_empty():
    op = CollageOperator((4, 4), channels=2, range_size=2, domain_size=None, aux_patches=3)
    z = torch.rand(3, 2, 4, 4)
    buffer = op.pooled_buffer(z)
    assert buffer.shape == (3, 2, 3 * 4)
    assert op.domain_means(buffer).shape == (3, 2, 0)
