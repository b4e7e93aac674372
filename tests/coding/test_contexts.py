"""Causal entropy-coding contexts: classes from the decoded row above only."""

import pytest
import torch

from neural_collages.coding.contexts import (
    CONTEXT_BOUNDS,
    MEAN_CONTEXT_BOUNDS,
    NUM_CONTEXTS,
    NUM_MEAN_CONTEXTS,
    context_grid,
    mean_context_grid,
)


def context_reference(nz):
    """``v = 2·above + above-left + above-right`` (zeros outside), class = #bounds strictly below v."""
    rows, cols = len(nz), len(nz[0])
    out = [[0] * cols for _ in range(rows)]
    for r in range(1, rows):
        for c in range(cols):
            up = nz[r - 1]
            v = 2 * up[c] + (up[c - 1] if c > 0 else 0) + (up[c + 1] if c + 1 < cols else 0)
            out[r][c] = sum(b < v for b in CONTEXT_BOUNDS)
    return out


def mean_context_reference(grid):
    """``|above − above-left| + |above-right − above|`` (edges replicated), class = #bounds ≤ activity."""
    rows, cols = len(grid), len(grid[0])
    out = [[0] * cols for _ in range(rows)]
    for r in range(1, rows):
        up = grid[r - 1]
        for c in range(cols):
            left, right = up[max(c - 1, 0)], up[min(c + 1, cols - 1)]
            act = abs(up[c] - left) + abs(right - up[c])
            out[r][c] = sum(b <= act for b in MEAN_CONTEXT_BOUNDS)
    return out


def test_class_counts():
    assert NUM_CONTEXTS == len(CONTEXT_BOUNDS) + 1 == 5
    assert NUM_MEAN_CONTEXTS == len(MEAN_CONTEXT_BOUNDS) + 1 == 5


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (6, 1), (4, 4), (7, 9)])
@pytest.mark.parametrize("seed", range(3))
def test_context_grid_matches_the_reference(shape, seed):
    g = torch.Generator().manual_seed(seed)
    nz = torch.randint(0, 9, shape, generator=g)
    got = context_grid(nz)
    assert got.shape == shape and got.dtype == torch.long
    assert got.tolist() == context_reference(nz.tolist())
    assert int(got.min()) >= 0 and int(got.max()) < NUM_CONTEXTS


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (6, 1), (4, 4), (7, 9)])
@pytest.mark.parametrize("seed", range(3))
def test_mean_context_grid_matches_the_reference(shape, seed):
    g = torch.Generator().manual_seed(seed)
    grid = torch.randint(0, 40, shape, generator=g)
    got = mean_context_grid(grid)
    assert got.shape == shape and got.dtype == torch.long
    assert got.tolist() == mean_context_reference(grid.tolist())
    assert int(got.min()) >= 0 and int(got.max()) < NUM_MEAN_CONTEXTS


@pytest.mark.parametrize(
    "v, expected",
    [(0, 0), (1, 1), (2, 1), (3, 2), (6, 2), (7, 3), (14, 3), (15, 4), (40, 4)],
)
def test_context_bucket_bounds(v, expected):
    # One nonzero count straight above gives v = 2·n; with a neighbour above-left, 2·n + m.
    n, m = divmod(v, 2)
    nz = torch.zeros(2, 3, dtype=torch.long)
    nz[0, 1] = n
    nz[0, 0] = m
    assert int(context_grid(nz)[1, 1]) == expected


@pytest.mark.parametrize(
    "act, expected",
    [(0, 1), (1, 1), (2, 2), (5, 2), (6, 3), (13, 3), (14, 4), (100, 4)],
)
def test_mean_context_bucket_bounds(act, expected):
    # Above row (0, act, act): at column 2, |act − act| + |act − act| = 0; at column 1: |act − 0| + 0.
    grid = torch.tensor([[0, act, act], [0, 0, 0]])
    ctx = mean_context_grid(grid)
    assert int(ctx[1, 1]) == expected
    assert int(ctx[1, 2]) == 1  # a flat neighbourhood above: activity 0
    assert ctx[0].tolist() == [0, 0, 0]  # row 0 is class 0, distinct from flat rows below


@pytest.mark.parametrize("fn, maker", [
    (context_grid, lambda g: torch.randint(0, 9, (6, 7), generator=g)),
    (mean_context_grid, lambda g: torch.randint(0, 60, (6, 7), generator=g)),
])
def test_classes_depend_only_on_the_row_above(fn, maker):
    g = torch.Generator().manual_seed(7)
    for trial in range(20):
        grid = maker(g)
        base = fn(grid)
        assert bool((base[0] == 0).all())
        r = trial % 6
        changed = grid.clone()
        changed[r] = maker(g)[0]
        after = fn(changed)
        # Rows up to r (the changed row and those above) keep their classes, and so do rows
        # below r + 1: only the row directly below may change.
        assert torch.equal(after[: r + 1], base[: r + 1])
        assert torch.equal(after[r + 2 :], base[r + 2 :])


def test_changing_the_row_above_does_change_the_classes():
    nz = torch.zeros(3, 4, dtype=torch.long)
    before = context_grid(nz)
    nz[1, 2] = 5
    after = context_grid(nz)
    assert not torch.equal(before[2], after[2])
    grid = torch.zeros(3, 4)
    before = mean_context_grid(grid)
    grid[1, 2] = 10
    assert not torch.equal(before[2], mean_context_grid(grid)[2])


def test_batched_grids_equal_per_slice_grids():
    g = torch.Generator().manual_seed(4)
    nz = torch.randint(0, 9, (2, 3, 5, 6), generator=g)
    means = torch.randint(0, 60, (2, 3, 5, 6), generator=g).float()
    ctx, mctx = context_grid(nz), mean_context_grid(means)
    assert ctx.shape == mctx.shape == nz.shape
    for i in range(2):
        for j in range(3):
            assert torch.equal(ctx[i, j], context_grid(nz[i, j]))
            assert torch.equal(mctx[i, j], mean_context_grid(means[i, j]))
    # 3-D (channels, rows, cols) as well.
    assert torch.equal(mean_context_grid(means[0]), mctx[0])


def test_mean_context_of_a_noisy_grid_is_that_of_its_rounded_values():
    g = torch.Generator().manual_seed(5)
    ints = torch.randint(0, 60, (6, 8), generator=g).double()
    noise = (torch.rand(6, 8, generator=g, dtype=torch.float64) - 0.5) * 0.98
    assert torch.equal(mean_context_grid(ints + noise), mean_context_grid(ints))
    assert torch.equal(mean_context_grid(ints), mean_context_grid(ints.long()))


def test_context_grid_accepts_boolean_masks():
    mask = torch.tensor([[True, False, True], [False, False, False]])
    assert context_grid(mask).tolist() == context_grid(mask.long()).tolist() == [[0, 0, 0], [1, 1, 1]]  # v = 2, 2, 2
