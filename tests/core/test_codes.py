"""Collage codes: DenseCode / SparseCode containers, the contractive parametrisation and its bound."""

import math

import pytest
import torch

from neural_collages.core.codes import (
    DenseCode,
    SparseCode,
    check_s_max,
    code_weights,
    contraction_bound,
    contractive_weights,
)
from neural_collages.errors import CodeError, ConfigurationError


def sparse_code(B=2, Cw=3, R=5, k=4, C=3, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, 10, (B, Cw, R, k), generator=g)
    scale = torch.randn(B, Cw, R, k, generator=g, dtype=dtype)
    bias = torch.randn(B, C, R, generator=g, dtype=dtype)
    return SparseCode(index, scale, bias)


# ------------------------------------------------------------------ containers


def test_dense_code_batch_size_to_and_detach():
    w = torch.randn(3, 1, 4, 6, requires_grad=True)
    b = torch.randn(3, 2, 4, requires_grad=True)
    code = DenseCode(w, b)
    assert code.batch_size == 3

    moved = code.to(torch.float64)
    assert moved.weights.dtype == torch.float64 and moved.bias.dtype == torch.float64
    torch.testing.assert_close(moved.weights, w.detach().double())
    torch.testing.assert_close(moved.bias, b.detach().double())

    detached = code.detach()
    assert not detached.weights.requires_grad and not detached.bias.requires_grad
    assert torch.equal(detached.weights, w) and torch.equal(detached.bias, b)
    # The original is untouched.
    assert code.weights.requires_grad and code.bias.requires_grad


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((torch.float64,), {}),
        ((torch.float16,), {}),
        (("cpu", torch.float64), {}),
        ((torch.device("cpu"),), {"dtype": torch.float64}),
        ((), {"device": "cpu", "dtype": torch.float64}),
        ((), {"dtype": torch.float64}),
    ],
)
def test_sparse_code_to_keeps_an_int64_index(args, kwargs):
    code = sparse_code()
    moved = code.to(*args, **kwargs)
    assert moved.index.dtype == torch.long
    assert torch.equal(moved.index, code.index)
    dtype = kwargs.get("dtype", next((a for a in args if isinstance(a, torch.dtype)), None))
    assert moved.scale.dtype == dtype and moved.bias.dtype == dtype
    torch.testing.assert_close(moved.scale, code.scale.to(dtype))
    torch.testing.assert_close(moved.bias, code.bias.to(dtype))


def test_sparse_code_batch_size_k_and_detach():
    code = sparse_code(B=2, Cw=1, R=5, k=3, C=3)
    assert code.batch_size == 2
    assert code.k == 3
    scale = code.scale.clone().requires_grad_(True)
    bias = code.bias.clone().requires_grad_(True)
    live = SparseCode(code.index, scale, bias)
    detached = live.detach()
    assert detached.index.dtype == torch.long and torch.equal(detached.index, code.index)
    assert not detached.scale.requires_grad and not detached.bias.requires_grad
    assert torch.equal(detached.scale, scale) and torch.equal(detached.bias, bias)


def test_from_unconstrained_applies_the_contractive_map():
    u = torch.randn(2, 1, 4, 7, dtype=torch.float64) * 3
    b = torch.randn(2, 1, 4, dtype=torch.float64)
    dense = DenseCode.from_unconstrained(u, b, 0.8)
    torch.testing.assert_close(dense.weights, contractive_weights(u, 0.8))
    assert dense.bias is b
    idx = torch.randint(0, 5, (2, 1, 4, 7))
    sparse = SparseCode.from_unconstrained(idx, u, b, 0.8)
    torch.testing.assert_close(sparse.scale, contractive_weights(u, 0.8))
    assert sparse.index is idx


# ------------------------------------------------------------------ contractive_weights


@pytest.mark.parametrize("s_max", [0.1, 0.5, 0.95, 0.999])
@pytest.mark.parametrize("dim", [-1, 0, 2])
def test_contractive_weights_l1_norm_is_at_most_s_max(s_max, dim):
    torch.manual_seed(1)
    u = torch.randn(4, 5, 6, dtype=torch.float64) * torch.logspace(-2, 2, 6, dtype=torch.float64)
    w = contractive_weights(u, s_max, dim=dim)
    assert w.shape == u.shape
    norms = w.abs().sum(dim=dim)
    assert bool((norms <= s_max * (1 + 1e-12)).all())
    # Outside the unit ball it is the radial projection: the norm is s_max, direction unchanged.
    outside = u.abs().sum(dim=dim) > 1
    assert outside.any()
    torch.testing.assert_close(norms[outside], torch.full_like(norms[outside], s_max))
    assert bool((torch.sign(w) == torch.sign(u)).all())


def test_contractive_weights_is_s_max_times_identity_inside_the_unit_ball():
    torch.manual_seed(2)
    u = torch.randn(10, 8, dtype=torch.float64)
    u = u / u.abs().sum(-1, keepdim=True) * torch.rand(10, 1, dtype=torch.float64)  # Σ|u| ≤ 1
    u[0] = 0.0
    u[1] = torch.tensor([0.5, -0.5, 0, 0, 0, 0, 0, 0], dtype=torch.float64)  # on the sphere exactly
    w = contractive_weights(u, 0.7)
    assert torch.equal(w, 0.7 * u)  # no shrinking of small weights: exact, not merely close


def test_contractive_weights_is_differentiable():
    u = torch.tensor([[0.2, -0.1], [3.0, 1.0]], dtype=torch.float64, requires_grad=True)
    w = contractive_weights(u, 0.5)
    w.sum().backward()
    # Inside the ball: d(0.5 u)/du = 0.5. Outside: w = 0.5 u / (u1 + u2), sum(w) = 0.5 constant.
    torch.testing.assert_close(u.grad[0], torch.tensor([0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(u.grad[1], torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 1.5, math.inf, math.nan])
def test_contractive_weights_and_check_s_max_reject_s_max_outside_0_1(bad):
    with pytest.raises(ConfigurationError):
        contractive_weights(torch.ones(3), bad)
    with pytest.raises(ConfigurationError):
        check_s_max(bad)


@pytest.mark.parametrize("good", [1e-6, 0.5, 0.9999, 0.25])
def test_check_s_max_accepts_and_returns_float(good):
    out = check_s_max(good)
    assert isinstance(out, float) and out == float(good)


def test_configuration_error_is_a_value_error():
    with pytest.raises(ValueError):
        check_s_max(2.0)


# ------------------------------------------------------------------ contraction_bound


def test_contraction_bound_dense_is_max_over_channels_and_ranges_of_l1_norm():
    w = torch.zeros(2, 3, 4, 5, dtype=torch.float64)
    w[0, 1, 2] = torch.tensor([0.1, -0.2, 0.3, 0.0, -0.05])  # 0.65
    w[0, 0, 0] = torch.tensor([0.5, 0.0, 0.0, 0.0, 0.0])  # 0.5
    w[1, 2, 3] = torch.tensor([-0.9, 0.0, 0.0, 0.0, 0.05])  # 0.95
    code = DenseCode(w, torch.zeros(2, 3, 4, dtype=torch.float64))
    bound = contraction_bound(code)
    assert bound.shape == (2,)
    torch.testing.assert_close(bound, torch.tensor([0.65, 0.95], dtype=torch.float64))


def test_contraction_bound_sparse_sums_the_k_scales():
    scale = torch.tensor([[[[0.3, -0.4]], [[0.1, 0.1]]]], dtype=torch.float64)  # (1, 2, 1, 2)
    index = torch.tensor([[[[0, 0]], [[1, 2]]]])
    code = SparseCode(index, scale, torch.zeros(1, 2, 1, dtype=torch.float64))
    torch.testing.assert_close(contraction_bound(code), torch.tensor([0.7], dtype=torch.float64))


def test_contraction_bound_matches_from_unconstrained_and_is_detached():
    torch.manual_seed(3)
    u = (torch.randn(4, 2, 6, 9) * 5).requires_grad_(True)
    code = DenseCode.from_unconstrained(u, torch.zeros(4, 2, 6), 0.9)
    bound = contraction_bound(code)
    assert not bound.requires_grad
    assert bool((bound <= 0.9 + 1e-6).all())
    torch.testing.assert_close(bound, torch.full((4,), 0.9), atol=1e-6, rtol=0)


def test_contraction_bound_of_a_code_without_candidates_is_zero():
    code = DenseCode(torch.zeros(3, 1, 4, 0), torch.zeros(3, 1, 4))
    bound = contraction_bound(code)
    assert torch.equal(bound, torch.zeros(3))


def test_code_weights_rejects_other_types():
    with pytest.raises(CodeError):
        code_weights(object())
    with pytest.raises(CodeError):
        contraction_bound((torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1)))
