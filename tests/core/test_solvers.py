"""Fixed-point solvers on known affine contractions (fixed points in closed form)."""

import math

import pytest
import torch

from neural_collages.core.solvers import DecodeStats, anderson, picard
from neural_collages.errors import ConfigurationError

SOLVERS = {"picard": picard, "anderson": anderson}


def half_map(c):
    """``z ↦ 0.5 z + c`` elementwise: contraction factor 0.5, fixed point ``2c``."""
    return lambda z: 0.5 * z + c


def diagonal_map(a, c):
    """``z ↦ a ⊙ z + c`` with ``|a| < 1``: fixed point ``c / (1 − a)``."""
    return lambda z: a * z + c


def problem(seed=0, B=3, shape=(2, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(B, *shape, generator=g, dtype=torch.float64)
    a = (torch.rand(B, *shape, generator=g, dtype=torch.float64) * 2 - 1) * 0.9
    return a, c


# ------------------------------------------------------------------ convergence


@pytest.mark.parametrize("method", SOLVERS)
@pytest.mark.parametrize("start", ["zeros", "random", "far"])
def test_converges_to_the_fixed_point_from_any_start(method, start):
    _, c = problem()
    init = {
        "zeros": torch.zeros_like(c),
        "random": torch.randn(c.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64),
        "far": torch.full_like(c, 1e3),
    }[start]
    z, stats = SOLVERS[method](half_map(c), init, tol=1e-12, max_steps=200)
    assert isinstance(stats, DecodeStats)
    assert stats.method == method
    assert stats.converged
    assert bool((stats.residual <= 1e-12).all())
    assert z.shape == c.shape
    torch.testing.assert_close(z, 2 * c, atol=1e-11, rtol=0)


@pytest.mark.parametrize("method", SOLVERS)
def test_converges_for_a_diagonal_contraction(method):
    a, c = problem(seed=1)
    z, stats = SOLVERS[method](diagonal_map(a, c), torch.zeros_like(c), tol=1e-12, max_steps=500)
    assert stats.converged
    torch.testing.assert_close(z, c / (1 - a), atol=1e-10, rtol=0)


def test_anderson_needs_fewer_steps_than_picard_on_a_slow_contraction():
    g = torch.Generator().manual_seed(2)
    c = torch.randn(2, 50, generator=g, dtype=torch.float64)
    a = 0.5 + 0.45 * torch.rand(2, 50, generator=g, dtype=torch.float64)  # factors up to 0.95
    step = diagonal_map(a, c)
    zp, sp = picard(step, torch.zeros_like(c), tol=1e-10, max_steps=5000)
    za, sa = anderson(step, torch.zeros_like(c), tol=1e-10, max_steps=5000)
    assert sp.converged and sa.converged
    assert sa.steps < sp.steps / 3
    torch.testing.assert_close(za, c / (1 - a), atol=1e-7, rtol=0)


# ------------------------------------------------------------------ residual semantics


def test_picard_residual_is_the_sup_norm_of_the_last_update_per_sample():
    # From zero, z_n − z_{n−1} = 0.5^(n−1) · c, so the residual after n steps is 0.5^(n−1)·max|c|.
    c = torch.zeros(3, 1, 4, 4, dtype=torch.float64)
    c[0, 0, 1, 2] = 1.0
    c[1, 0, 3, 3] = -4.0
    c[2] = 0.25
    z, stats = picard(half_map(c), torch.zeros_like(c), tol=0.0, max_steps=5)
    assert stats.steps == 5
    expected = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64) * 0.5**4
    assert torch.equal(stats.residual, expected)  # powers of two: exact
    assert stats.residual.shape == (3,)
    # The stated bound on the distance to the fixed point: residual · s / (1 − s) with s = 0.5.
    error = (z - 2 * c).abs().flatten(1).amax(1)
    assert bool((error <= stats.residual * 0.5 / 0.5).all())


def test_picard_stops_at_the_first_step_whose_update_is_within_tol():
    c = torch.ones(2, 3, dtype=torch.float64)
    c[1] = 0.5  # the slower sample decides
    # Residual after n steps: 0.5^(n−1) for sample 0 → ≤ 2^-10 first at n = 11.
    _, stats = picard(half_map(c), torch.zeros_like(c), tol=2.0**-10, max_steps=100)
    assert stats.steps == 11 and stats.converged
    assert torch.equal(stats.residual, torch.tensor([2.0**-10, 2.0**-11], dtype=torch.float64))
    # One step short of the budget: not converged, and the residual is the last one.
    _, stats = picard(half_map(c), torch.zeros_like(c), tol=2.0**-10, max_steps=10)
    assert stats.steps == 10 and not stats.converged
    assert torch.equal(stats.residual, torch.tensor([2.0**-9, 2.0**-10], dtype=torch.float64))


def test_anderson_returns_an_f_output_and_the_residual_at_the_last_iterate():
    a, c = problem(seed=3)
    a = a.clamp(min=0.2) + 0.0  # keep the map well invertible
    step = diagonal_map(a, c)
    z, stats = anderson(step, torch.zeros_like(c), tol=0.0, max_steps=4, trajectory=True)
    # The returned image is F(x) for the last evaluated iterate x = (z − c) / a.
    x = (z - c) / a
    torch.testing.assert_close(step(x), z)
    residual = (z - x).abs().flatten(1).amax(1)
    torch.testing.assert_close(stats.residual, residual, atol=1e-10, rtol=1e-8)
    assert torch.equal(stats.trajectory[-1], z)


def test_anderson_first_step_is_a_picard_step():
    a, c = problem(seed=4)
    init = torch.randn(c.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    step = diagonal_map(a, c)
    za, sa = anderson(step, init, tol=0.0, max_steps=1)
    zp, sp = picard(step, init, tol=0.0, max_steps=1)
    assert torch.equal(za, zp)
    assert torch.equal(sa.residual, sp.residual)


def test_an_exact_fixed_point_stops_at_once_even_with_tol_zero():
    c = torch.randn(2, 6, dtype=torch.float64)
    for solver in (picard, anderson):
        z, stats = solver(half_map(c), 2 * c, tol=0.0, max_steps=50)
        assert stats.steps == 1 and stats.converged
        assert torch.equal(stats.residual, torch.zeros(2, dtype=torch.float64))
        assert torch.equal(z, 2 * c)


# ------------------------------------------------------------------ budgets and trajectories


@pytest.mark.parametrize("max_steps", [1, 3, 17])
def test_tol_zero_runs_exactly_max_steps_with_a_full_trajectory(max_steps):
    a, c = problem(seed=5)
    init = torch.zeros_like(c)
    calls = []

    def step(z):
        calls.append(1)
        return a * z + c

    for solver in (picard, anderson):
        calls.clear()
        z, stats = solver(step, init, tol=0.0, max_steps=max_steps, trajectory=True)
        assert stats.steps == max_steps == len(calls)
        assert len(stats.trajectory) == max_steps + 1
        assert torch.equal(stats.trajectory[0], init)
        assert torch.equal(stats.trajectory[-1], z)
        assert not stats.converged  # residuals are still positive


def test_picard_trajectory_holds_every_iterate():
    c = torch.randn(2, 3, dtype=torch.float64)
    z, stats = picard(half_map(c), torch.zeros_like(c), tol=0.0, max_steps=4, trajectory=True)
    expected = [torch.zeros_like(c)]
    for _ in range(4):
        expected.append(0.5 * expected[-1] + c)
    assert len(stats.trajectory) == 5
    for got, want in zip(stats.trajectory, expected):
        assert torch.equal(got, want)


def test_trajectory_is_detached_and_off_by_default():
    c = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    for solver in (picard, anderson):
        _, stats = solver(half_map(c), torch.zeros(2, 3, dtype=torch.float64), tol=0.0, max_steps=3)
        assert stats.trajectory is None
        _, stats = solver(half_map(c), torch.zeros(2, 3, dtype=torch.float64), tol=0.0, max_steps=3,
                          trajectory=True)
        assert all(not t.requires_grad for t in stats.trajectory)


@pytest.mark.parametrize("solver", [picard, anderson])
@pytest.mark.parametrize(
    "tol, max_steps",
    [(1e-3, 0), (1e-3, -1), (1e-3, 2.0), (1e-3, True), (1e-3, "5"), (1e-3, None), (-1e-9, 5), (math.nan, 5)],
)
def test_bad_budgets_raise(solver, tol, max_steps):
    calls = []

    def step(z):
        calls.append(1)
        return z

    with pytest.raises(ConfigurationError):
        solver(step, torch.zeros(1, 2), tol=tol, max_steps=max_steps)
    assert not calls  # validated before any work


@pytest.mark.parametrize("memory", [0, -2])
def test_anderson_rejects_a_memory_below_one(memory):
    with pytest.raises(ConfigurationError):
        anderson(lambda z: z, torch.zeros(1, 2), tol=0.0, max_steps=3, memory=memory)


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("n", [1, 4, 10])
def test_gradients_flow_through_unrolled_picard_iterations(n):
    # From zero, z_n = c · (2 − 2^(1−n)), so d Σ z_n / dc = 2 − 2^(1−n) exactly.
    c = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    z, _ = picard(half_map(c), torch.zeros(2, 3, 4, dtype=torch.float64), tol=0.0, max_steps=n)
    z.sum().backward()
    torch.testing.assert_close(c.grad, torch.full_like(c, 2 - 2.0 ** (1 - n)))


def test_gradients_flow_through_the_start_of_picard():
    init = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 5, dtype=torch.float64)
    z, _ = picard(half_map(c), init, tol=0.0, max_steps=3)
    z.sum().backward()
    torch.testing.assert_close(init.grad, torch.full_like(init, 0.125))


def test_gradients_flow_through_anderson_to_the_map_parameters():
    a, c = problem(seed=6, B=2, shape=(8,))
    c = c.clone().requires_grad_(True)
    a = a.clone().requires_grad_(True)
    z, stats = anderson(diagonal_map(a, c), torch.zeros(2, 8, dtype=torch.float64), tol=1e-13, max_steps=100)
    assert stats.converged
    z.sum().backward()
    # At the fixed point z* = c / (1 − a): dz*/dc = 1 / (1 − a), dz*/da = c / (1 − a)².
    torch.testing.assert_close(c.grad, 1 / (1 - a.detach()), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a.grad, c.detach() / (1 - a.detach()) ** 2, atol=1e-6, rtol=1e-6)


def test_gradcheck_through_a_few_anderson_steps():
    a, c = problem(seed=7, B=2, shape=(3,))
    c = c.clone().requires_grad_(True)

    def run(c):
        return anderson(diagonal_map(a, c), torch.zeros(2, 3, dtype=torch.float64), tol=0.0, max_steps=4)[0]

    assert torch.autograd.gradcheck(run, (c,))


def test_picard_into_two_buffers_gives_the_same_iterates_and_overwrites_only_its_start():
    a, c = problem(seed=3)
    f = diagonal_map(a, c)
    calls = []

    def into(z, out):
        calls.append(out.data_ptr())
        return torch.mul(a, z, out=out).add_(c)

    for steps, tol in ((1, 0.0), (7, 0.0), (200, 1e-9)):
        start = torch.zeros_like(c)
        expected, stats = picard(f, start.clone(), tol, steps)
        calls.clear()
        got, stats2 = picard(f, start, tol, steps, step_into=into)
        assert torch.equal(got, expected) and stats2.steps == stats.steps
        assert torch.equal(stats2.residual, stats.residual) and stats2.converged == stats.converged
        assert len(set(calls)) <= 2  # two buffers in all, the start being one of them
    # With a trajectory it keeps every iterate, so the start is left alone.
    start = torch.zeros_like(c)
    picard(f, start, 0.0, 3, trajectory=True, step_into=into)
    assert torch.equal(start, torch.zeros_like(c))
