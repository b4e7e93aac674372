import itertools

import pytest
import torch
import torch.nn.functional as F

from neural_collages import (
    CodeError,
    CollageOperator,
    ConfigurationError,
    DenseCode,
    SparseCode,
    contraction_bound,
)

# Small configurations that together cover: rectangular images and cells, several domain sizes,
# overlapping and non-pool-aligned strides, all isometries, whole-image domains, auxiliary
# patches larger than a range cell, shared and per-channel maps.
CONFIGS = {
    "pifs": dict(size=(8, 12), channels=1, range_size=2, domain_size=4, domain_stride=2, isometries=range(8)),
    "multiscale_overlap": dict(
        size=(12, 8), channels=2, range_size=2, domain_size=[4, (6, 8)], domain_stride=[3, (2, 1)],
        isometries=("identity", "rot180", "flip"),
    ),
    "whole_image_aux": dict(
        size=(8, 8), channels=3, range_size=4, domain_size=(8, 8), isometries=range(8),
        aux_patches=3, aux_patch_size=8,
    ),
    "rect_cells_shared": dict(
        size=(6, 8), channels=3, range_size=(3, 2), domain_size=(6, 4), domain_stride=(3, 2),
        isometries=("identity", "flip", "rot180", "flip_rot180"), channel_maps="shared", aux_patches=2,
    ),
    "aux_only": dict(size=(4, 4), channels=1, range_size=2, domain_size=None, aux_patches=4),
    "centred_multiscale_aux": dict(
        size=(8, 12), channels=2, range_size=2, domain_size=[4, (8, 12)], domain_stride=[(2, 4), 1],
        isometries=range(8), aux_patches=2, aux_patch_size=4, centred=True,
    ),
}


def make(name, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return CollageOperator(**CONFIGS[name]).to(dtype)


def reference_step(op: CollageOperator, z: torch.Tensor, code, scale: int = 1) -> torch.Tensor:
    """An obviously correct collage step: Python loops over candidates, ranges and channels."""
    B, C = z.shape[:2]
    rh, rw = op.range_size
    ph, pw = scale * rh, scale * rw
    candidates = []
    for lattice in op.lattices:
        dh, dw = lattice.cell_size
        ah, aw = lattice.pool
        for y, x in lattice.origins():
            cell = z[:, :, scale * y : scale * (y + dh), scale * x : scale * (x + dw)]
            pooled = cell.reshape(B, C, ph, ah, pw, aw).mean(dim=(3, 5))
            if op.centred:
                pooled = pooled - pooled.mean(dim=(-2, -1), keepdim=True)
            for iso in op.isometries:
                block = torch.flip(pooled, dims=(-1,)) if iso >= 4 else pooled
                for _ in range(iso % 4):  # quarter turn counter-clockwise
                    block = torch.flip(block.transpose(-2, -1), dims=(-2,))
                candidates.append(block)
    for patch in op.aux_patches:
        up = patch.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
        kh, kw = up.shape[-2] // ph, up.shape[-1] // pw
        pooled = up.reshape(-1, ph, kh, pw, kw).mean(dim=(2, 4))
        if op.centred:
            pooled = pooled - pooled.mean(dim=(-2, -1), keepdim=True)
        candidates.append(pooled.expand(C, ph, pw).unsqueeze(0).expand(B, C, ph, pw))
    out = torch.empty_like(z)
    for r, (y, x) in enumerate(op.range_grid.origins()):
        for c in range(C):
            cw = c if op.channel_maps == "per_channel" else 0
            for b in range(B):
                acc = code.bias[b, c, r] * torch.ones(ph, pw, dtype=z.dtype)
                if isinstance(code, DenseCode):
                    for d, cand in enumerate(candidates):
                        acc = acc + code.weights[b, cw, r, d] * cand[b, c]
                else:
                    for j in range(code.k):
                        acc = acc + code.scale[b, cw, r, j] * candidates[int(code.index[b, cw, r, j])][b, c]
                out[b, c, scale * y : scale * y + ph, scale * x : scale * x + pw] = acc
    return out


def sparse_to_dense(op, code: SparseCode) -> DenseCode:
    B, Cw, R, _ = code.index.shape
    weights = torch.zeros(B, Cw, R, op.num_candidates, dtype=code.scale.dtype)
    weights.scatter_add_(3, code.index, code.scale)
    return DenseCode(weights, code.bias)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_step_matches_reference_loop(name, scale, kind):
    op = make(name)
    g = torch.Generator().manual_seed(1)
    code = op.random_code(2, g, kind=kind, k=2, dtype=torch.float64)
    H, W = op.size
    z = torch.rand(2, op.channels, scale * H, scale * W, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op.step(z, code, scale=scale), reference_step(op, z, code, scale))


@pytest.mark.parametrize("name", CONFIGS)
def test_sparse_equals_dense(name):
    op = make(name)
    g = torch.Generator().manual_seed(2)
    code = op.random_code(3, g, kind="sparse", k=3, dtype=torch.float64)
    code.index[:, :, :, 1] = code.index[:, :, :, 0]  # duplicated picks must add up
    dense = sparse_to_dense(op, code)
    z = torch.rand(3, op.channels, *op.size, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op.step(z, code), op.step(z, dense))
    torch.testing.assert_close(op.decode(code, tol=1e-12)[0], op.decode(dense, tol=1e-12)[0])


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_lipschitz_bound_holds(name, kind):
    op = make(name)
    g = torch.Generator().manual_seed(3)
    for trial in range(5):
        code = op.random_code(4, g, kind=kind, k=2, dtype=torch.float64)
        bound = op.lipschitz_bound(code)
        assert float(bound.max()) <= op.s_max + 1e-12
        z1 = torch.randn(4, op.channels, *op.size, generator=g, dtype=torch.float64) * 10
        z2 = z1 + torch.randn(z1.shape, generator=g, dtype=torch.float64)
        lhs = (op.step(z1, code) - op.step(z2, code)).abs().flatten(1).amax(1)
        rhs = bound * (z1 - z2).abs().flatten(1).amax(1)
        assert torch.all(lhs <= rhs + 1e-12)


def test_lipschitz_bound_is_attained():
    # A single range mapped to a constant domain attains the bound: it is not loose by design.
    op = CollageOperator((4, 4), channels=1, range_size=4, domain_size=4).double()
    code = SparseCode(torch.zeros(1, 1, 1, 1, dtype=torch.long), torch.full((1, 1, 1, 1), -0.7, dtype=torch.float64),
                      torch.zeros(1, 1, 1, dtype=torch.float64))
    z = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    assert torch.allclose(op.step(z + 1, code) - op.step(z, code), torch.full_like(z, -0.7))


@pytest.mark.parametrize("name", ["pifs", "whole_image_aux", "rect_cells_shared", "centred_multiscale_aux"])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_fixed_point_is_independent_of_start(name, kind):
    op = make(name)
    g = torch.Generator().manual_seed(4)
    code = op.random_code(2, g, kind=kind, dtype=torch.float64)
    tol = 1e-10
    starts = [None, torch.rand(2, op.channels, *op.size, generator=g, dtype=torch.float64) * 100 - 50]
    results = [op.decode(code, init=s, tol=tol, max_steps=2000) for s in starts]
    for image, stats in results:
        assert stats.converged and stats.steps < 2000
        # It is a fixed point: F(z*) = z*.
        torch.testing.assert_close(op.step(image, code), image, atol=1e-9, rtol=0)
    s = float(op.lipschitz_bound(code).max())
    assert (results[0][0] - results[1][0]).abs().max() <= 2 * tol * s / (1 - s) + 1e-12


@pytest.mark.parametrize(
    "name", ["pifs", "multiscale_overlap", "whole_image_aux", "rect_cells_shared", "centred_multiscale_aux"]
)
@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("scale", [2, 3])
def test_scale_consistency(name, kind, scale):
    op = make(name)
    g = torch.Generator().manual_seed(5)
    code = op.random_code(2, g, kind=kind, k=2, dtype=torch.float64)
    base, _ = op.decode(code, tol=1e-10, max_steps=1000)
    big, stats = op.decode(code, scale=scale, tol=1e-10, max_steps=1000)
    assert big.shape[-2:] == (scale * op.size[0], scale * op.size[1])
    torch.testing.assert_close(F.avg_pool2d(big, scale), base, atol=1e-8, rtol=0)
    # Zooming adds detail: the big decode is not just the small one upsampled (2:1 domains).
    if name == "pifs" and kind == "sparse":
        upsampled = base.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
        assert (big - upsampled).abs().max() > 1e-3


def test_step_commutes_with_pooling_exactly_for_one_step():
    op = make("multiscale_overlap")
    g = torch.Generator().manual_seed(6)
    code = op.random_code(1, g, kind="dense", dtype=torch.float64)
    z = torch.rand(1, op.channels, 3 * op.size[0], 3 * op.size[1], generator=g, dtype=torch.float64)
    torch.testing.assert_close(F.avg_pool2d(op.step(z, code, scale=3), 3), op.step(F.avg_pool2d(z, 3), code))


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_gradcheck_through_unrolled_decode(kind):
    op = make("whole_image_aux" if kind == "dense" else "rect_cells_shared")
    g = torch.Generator().manual_seed(7)
    code = op.random_code(1, g, kind=kind, k=2, dtype=torch.float64)
    weights = code.weights if kind == "dense" else code.scale
    leaves = (weights.clone().requires_grad_(), code.bias.clone().requires_grad_(),
              op.aux_patches.detach().clone().requires_grad_())

    def decode(w, b, aux):
        c = DenseCode(w, b) if kind == "dense" else SparseCode(code.index, w, b)
        # functional_call swaps in ``aux`` for the module's patches, making them an input.
        kwargs = dict(scale=2, tol=0, max_steps=3, check_contraction=False)
        return torch.func.functional_call(op, {"aux_patches": aux}, (c,), kwargs)

    assert torch.autograd.gradcheck(decode, leaves)


def test_decode_runs_exactly_max_steps_with_zero_tol_and_trajectory():
    op = make("pifs")
    code = op.random_code(1, torch.Generator().manual_seed(8), dtype=torch.float64)
    image, stats = op.decode(code, tol=0, max_steps=7, return_trajectory=True)
    assert stats.steps == 7 and len(stats.trajectory) == 8
    assert torch.equal(stats.trajectory[0], torch.zeros_like(image))
    assert torch.equal(stats.trajectory[-1], image)
    # Each trajectory entry is one more step.
    torch.testing.assert_close(op.step(stats.trajectory[3], code), stats.trajectory[4])


def test_anderson_matches_picard_and_accelerates_slow_contractions():
    # Every range maps onto its own co-located domain cell with scale 0.99: F(z) = 0.99 z + b, the
    # slowest kind of contraction for plain iteration; Anderson solves it in a few steps.
    op = CollageOperator((8, 8), channels=1, range_size=2, domain_size=2).double()
    R = op.num_ranges
    index = torch.arange(R).reshape(1, 1, R, 1)
    code = SparseCode(index, torch.full((1, 1, R, 1), 0.99, dtype=torch.float64),
                      torch.rand(1, 1, R, generator=torch.Generator().manual_seed(9), dtype=torch.float64))
    slow, slow_stats = op.decode(code, tol=1e-8, max_steps=5000)
    fast, fast_stats = op.decode(code, tol=1e-8, max_steps=5000, method="anderson")
    assert slow_stats.converged and fast_stats.converged
    assert slow_stats.steps > 1000 and fast_stats.steps < 20
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)
    exact = code.bias.reshape(1, 1, 4, 4).repeat_interleave(2, -2).repeat_interleave(2, -1) / 0.01
    torch.testing.assert_close(fast, exact, atol=1e-5, rtol=0)


def test_collage_theorem_bound_and_loss():
    op = make("pifs")
    g = torch.Generator().manual_seed(10)
    code = op.random_code(3, g, dtype=torch.float64)
    fixed, _ = op.decode(code, tol=1e-12, max_steps=1000)
    assert float(op.collage_loss(fixed, code)) < 1e-20
    x = torch.rand(3, 1, *op.size, generator=g, dtype=torch.float64)
    bound = op.collage_error_bound(x, code)
    actual = (x - fixed).abs().flatten(1).amax(1)
    assert torch.all(actual <= bound + 1e-9)
    assert torch.all(op.collage_loss(x, code, reduction="none") > 0)


def test_collage_loss_trains_a_code():
    op = make("whole_image_aux", dtype=torch.float32)
    target = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(11))
    u = torch.zeros(1, 3, op.num_ranges, op.num_candidates, requires_grad=True)
    b = torch.zeros(1, 3, op.num_ranges, requires_grad=True)
    opt = torch.optim.Adam([u, b, op.aux_patches], lr=0.05)
    first = None
    for _ in range(60):
        loss = op.collage_loss(target, op.parametrize(u, b))
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    assert float(contraction_bound(op.parametrize(u, b))) <= op.s_max + 1e-6


def test_dtype_follows_code():
    op = make("pifs", dtype=torch.float32)
    code = op.random_code(1, dtype=torch.float64)
    assert op.decode(code)[0].dtype == torch.float64


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=(10, 10), range_size=4, domain_size=8), "do not tile"),
        (dict(size=(16, 16), range_size=4, domain_size=6), "integer multiple"),
        (dict(size=(16, 16), range_size=4, domain_size=32), "does not fit"),
        (dict(size=(16, 16), range_size=4, domain_size=8, s_max=1.0), "s_max"),
        (dict(size=(16, 16), range_size=4, domain_size=8, s_max=0), "s_max"),
        (dict(size=(16, 16), range_size=(4, 2), domain_size=8, isometries=("rot90",)), "square range"),
        (dict(size=(16, 16), range_size=4, domain_size=8, isometries=("twirl",)), "unknown isometry"),
        (dict(size=(16, 16), range_size=4, domain_size=8, isometries=(9,)), "isometry"),
        (dict(size=(16, 16), range_size=4, domain_size=8, isometries=()), "at least one"),
        (dict(size=(16, 16), range_size=4, domain_size=8, isometries=(0, 0)), "duplicates"),
        (dict(size=(16, 16), range_size=4, domain_size=[8, 16], domain_stride=[4, 4, 4]), "strides"),
        (dict(size=(16, 16), range_size=4, domain_size=8, domain_stride=0), "positive"),
        (dict(size=(16, 16), range_size=4, domain_size=None), "no candidates"),
        (dict(size=(16, 16), range_size=4, domain_size=8, channel_maps="rgb"), "channel_maps"),
        (dict(size=(16, 16), range_size=4, domain_size=8, channels=0), "channels"),
        (dict(size=(16, 16), range_size=4, domain_size=8, aux_patches=2, aux_patch_size=6), "auxiliary patch"),
        (dict(size=(16, 16), range_size=4, domain_size=8, aux_patches=torch.zeros(2, 2, 4, 4)), "aux_patches"),
        (dict(size=(16, 16), range_size=4, domain_size=8, aux_patches=-1), "aux_patches"),
        (dict(size=(16, 0), range_size=4, domain_size=8), "positive"),
        (dict(size="big", range_size=4, domain_size=8), "size"),
    ],
)
def test_configuration_errors(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        CollageOperator(**kwargs)


def test_code_errors():
    op = CollageOperator((8, 8), channels=3, range_size=4, domain_size=8, isometries=range(8))
    good = op.random_code(2)
    z = torch.zeros(2, 3, 8, 8)
    R, D = op.num_ranges, op.num_candidates
    bad_codes = [
        DenseCode(good.weights[..., :-1], good.bias),
        DenseCode(good.weights, good.bias[:, :2]),
        DenseCode(good.weights[:1], good.bias),
        SparseCode(torch.zeros(2, 3, R, 1), torch.zeros(2, 3, R, 1), good.bias),  # float index
        SparseCode(torch.full((2, 3, R, 1), D), torch.zeros(2, 3, R, 1), good.bias),  # out of range
        SparseCode(torch.full((2, 3, R, 1), -1), torch.zeros(2, 3, R, 1), good.bias),
        SparseCode(torch.zeros(2, 3, R, 1, dtype=torch.long), torch.zeros(2, 3, R, 2), good.bias),
        SparseCode(torch.zeros(2, 1, R, 1, dtype=torch.long), torch.zeros(2, 1, R, 1), good.bias),  # shared on per-channel op
        "not a code",
    ]
    for code in bad_codes:
        with pytest.raises(CodeError):
            op.step(z, code)
        with pytest.raises(CodeError):
            op.decode(code)
    with pytest.raises(CodeError, match="shape"):
        op.step(torch.zeros(2, 3, 8, 9), good)
    with pytest.raises(CodeError, match="batch"):
        op.step(torch.zeros(1, 3, 8, 8), good)
    with pytest.raises(CodeError, match="shape"):
        op.decode(good, init=torch.zeros(2, 3, 4, 4))
    with pytest.raises(CodeError, match="not contractive"):
        op.decode(DenseCode(good.weights * 2, good.bias))
    for scale in (0, 1.5, True, "2"):
        with pytest.raises(ConfigurationError, match="scale"):
            op.decode(good, scale=scale)
    with pytest.raises(ConfigurationError, match="method"):
        op.decode(good, method="newton")
    with pytest.raises(ConfigurationError, match="max_steps"):
        op.decode(good, max_steps=0)
    with pytest.raises(ConfigurationError, match="kind"):
        op.random_code(1, kind="other")


def test_candidate_info_describes_the_pixels_it_reads():
    op = CollageOperator((8, 8), channels=1, range_size=2, domain_size=[4, 8], domain_stride=[2, 8],
                         isometries=range(8), aux_patches=1).double()
    z = torch.arange(64, dtype=torch.float64).reshape(1, 1, 8, 8)
    cands = op.candidates(z)[0, 0]
    assert cands.shape == (op.num_candidates, 4)
    for index in itertools.chain(range(0, op.num_candidates, 7), [op.num_candidates - 1]):
        info = op.candidate_info(index)
        if info.kind == "aux":
            continue
        y, x = info.origin
        h, w = info.cell_size
        cell = z[0, 0, y : y + h, x : x + w]
        pooled = cell.reshape(2, h // 2, 2, w // 2).mean(dim=(1, 3))
        iso = op.isometries[["identity", "rot90", "rot180", "rot270", "flip", "flip_rot90", "flip_rot180",
                             "flip_rot270"].index(info.isometry)]
        block = torch.flip(pooled, dims=(-1,)) if iso >= 4 else pooled
        block = torch.rot90(block, iso % 4)
        torch.testing.assert_close(cands[index], block.reshape(-1))
    assert op.candidate_info(op.num_candidates - 1).kind == "aux"
    with pytest.raises(CodeError):
        op.candidate_info(op.num_candidates)


def test_centred_code_bias_is_the_range_mean():
    op = make("centred_multiscale_aux")
    code = op.random_code(2, torch.Generator().manual_seed(12), kind="sparse", k=2, dtype=torch.float64)
    z = torch.rand(2, op.channels, *op.size, dtype=torch.float64)
    torch.testing.assert_close(op.ranges(op.step(z, code)).mean(-1), code.bias)


@pytest.mark.parametrize("name", ["pifs", "centred_multiscale_aux", "rect_cells_shared"])
def test_range_subsets_compose_to_the_full_step(name):
    op = make(name)
    g = torch.Generator().manual_seed(13)
    code = op.random_code(2, g, kind="sparse", k=2, dtype=torch.float64)
    z = torch.rand(2, op.channels, 2 * op.size[0], 2 * op.size[1], generator=g, dtype=torch.float64)
    perm = torch.randperm(op.num_ranges, generator=g)
    parts = [perm[: op.num_ranges // 3], perm[op.num_ranges // 3 :]]
    out = torch.full_like(z, float("nan"))
    for part in parts:
        sub = SparseCode(code.index[:, :, part], code.scale[:, :, part], code.bias[:, :, part])
        out = op.apply_prepared(z, op.prepare(sub, scale=2, ranges=part), out=out)
    torch.testing.assert_close(out, op.step(z, code, scale=2))
    with pytest.raises(CodeError, match="repeat"):
        op.prepare(code, ranges=torch.zeros(op.num_ranges, dtype=torch.long))
    with pytest.raises(CodeError, match="out="):
        sub = SparseCode(code.index[:, :, parts[0]], code.scale[:, :, parts[0]], code.bias[:, :, parts[0]])
        op.apply_prepared(z, op.prepare(sub, scale=2, ranges=parts[0]))


@pytest.mark.parametrize("name", ["pifs", "centred_multiscale_aux"])
def test_sparse_decode_is_bit_exact_across_thread_counts(name):
    op = make(name, dtype=torch.float32)
    code = op.random_code(1, torch.Generator().manual_seed(14), kind="sparse", k=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = op.decode(code, scale=3, tol=0, max_steps=12)
        torch.set_num_threads(max(2, threads))
        many, _ = op.decode(code, scale=3, tol=0, max_steps=12)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)


@pytest.mark.parametrize("name", ["whole_image_aux", "centred_multiscale_aux"])
def test_aux_weights_do_not_count_in_the_lipschitz_bound(name):
    # Aux patches are constants: large aux weights must neither break the contraction nor the bound.
    op = make(name)
    g = torch.Generator().manual_seed(11)
    u = torch.randn(3, op.weight_channels, op.num_ranges, op.num_candidates, generator=g, dtype=torch.float64)
    u[..., op.num_candidates - op.num_aux:] *= 50
    code = op.parametrize_domains(u, torch.rand(3, op.channels, op.num_ranges, generator=g, dtype=torch.float64))
    bound = op.lipschitz_bound(code)
    assert float(bound.max()) <= op.s_max + 1e-12
    assert float(contraction_bound(code).min()) > 1  # the all-candidate sum is far above 1
    z1 = torch.randn(3, op.channels, *op.size, generator=g, dtype=torch.float64)
    z2 = z1 + torch.randn(z1.shape, generator=g, dtype=torch.float64)
    lhs = (op.step(z1, code) - op.step(z2, code)).abs().flatten(1).amax(1)
    assert torch.all(lhs <= bound * (z1 - z2).abs().flatten(1).amax(1) + 1e-12)
    image, stats = op.decode(code, tol=1e-10, max_steps=1000)
    assert stats.converged
    with pytest.raises(CodeError):
        op.parametrize_domains(u[..., :-1], code.bias)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("band_values", [1, 50])
def test_banded_dense_step_of_large_outputs_matches_the_reference(name, band_values, monkeypatch):
    # Without gradients, large dense steps are computed a band of range rows at a time and
    # written into the image (bounded temporaries); forcing that path must give the same step.
    import neural_collages.core.step as step_module

    op = make(name)
    g = torch.Generator().manual_seed(4)
    code = op.random_code(2, g, kind="dense", dtype=torch.float64)
    H, W = op.size
    z = torch.rand(2, op.channels, 2 * H, 2 * W, generator=g, dtype=torch.float64)
    monkeypatch.setattr(step_module, "DENSE_BAND_VALUES", band_values)
    with torch.no_grad():
        banded = op.step(z, code, scale=2)
    torch.testing.assert_close(banded, reference_step(op, z, code, 2))


@pytest.mark.parametrize("centred", [False, True])
def test_domain_cells_are_the_identity_candidates(centred):
    """What a search that handles isometries itself reads: candidate d·8 (identity) of every domain."""
    op = CollageOperator(size=(16, 24), channels=2, range_size=4, domain_size=(8, 16), domain_stride=4,
                         isometries=range(8), centred=centred)
    x = torch.rand(3, 2, 16, 24)
    cand = op.candidates(x)
    assert torch.equal(op.domain_cells(x), cand[:, :, : op.num_domains * 8 : 8])
    with pytest.raises(ConfigurationError, match="identity"):
        CollageOperator(size=(8, 8), channels=1, range_size=2, domain_size=4, isometries=["rot90"]).domain_cells(
            torch.rand(1, 1, 8, 8))
