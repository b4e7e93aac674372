"""Causal predictors of block means: MED (LOCO-I) over grids and the quadtree neighbour mean."""

import numpy as np
import pytest
import torch

from neural_collages.coding.predictors import (
    NeighbourMeanGrid,
    med_predict,
    med_reconstruct_row,
    med_residuals,
    neighbour_mean_prediction,
)


def med_reference(grid, first):
    """Per-cell LOCO-I prediction written out with Python loops."""
    h, w = len(grid), len(grid[0])
    pred = [[None] * w for _ in range(h)]
    for y in range(h):
        for x in range(w):
            if y == 0 and x == 0:
                pred[y][x] = first
            elif y == 0:
                pred[y][x] = grid[y][x - 1]
            elif x == 0:
                pred[y][x] = grid[y - 1][x]
            else:
                a, b, c = grid[y][x - 1], grid[y - 1][x], grid[y - 1][x - 1]
                if c >= max(a, b):
                    pred[y][x] = min(a, b)
                elif c <= min(a, b):
                    pred[y][x] = max(a, b)
                else:
                    pred[y][x] = a + b - c
    return pred


SHAPES = [(1, 1), (1, 7), (6, 1), (2, 2), (5, 8), (9, 4)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", range(3))
def test_med_predict_matches_the_per_cell_reference_on_integers(shape, seed):
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 20, size=shape)  # small range: many ties and equalities
    got = med_predict(torch.from_numpy(grid), 7)
    assert got.dtype == torch.int64 and got.shape == shape
    assert got.tolist() == med_reference(grid.tolist(), 7)


@pytest.mark.parametrize("shape", SHAPES)
def test_med_predict_matches_the_reference_on_floats(shape):
    g = torch.Generator().manual_seed(1)
    grid = torch.rand(*shape, generator=g, dtype=torch.float64) * 100
    got = med_predict(grid, 50.5)
    want = torch.tensor(med_reference(grid.tolist(), 50.5), dtype=torch.float64)
    assert torch.equal(got, want)


def test_med_predict_works_on_batches_of_grids():
    g = torch.Generator().manual_seed(2)
    grids = torch.randint(0, 30, (3, 2, 5, 6), generator=g)
    got = med_predict(grids, 3)
    assert got.shape == grids.shape
    for i in range(3):
        for j in range(2):
            assert torch.equal(got[i, j], med_predict(grids[i, j], 3))


def test_med_predict_is_causal():
    """Changing a cell changes only the predictions of later cells (in raster order)."""
    g = torch.Generator().manual_seed(3)
    grid = torch.randint(0, 50, (5, 6), generator=g)
    base = med_predict(grid, 0)
    for y in range(5):
        for x in range(6):
            changed = grid.clone()
            changed[y, x] += 1000
            diff = (med_predict(changed, 0) != base).nonzero().tolist()
            assert all((yy, xx) > (y, x) for yy, xx in diff)


def test_med_predict_is_exact_on_planes_and_edges():
    # A plane rising along one axis and falling along the other puts the top-left cell between
    # left and top, so the planar prediction left + top − top-left is used and is exact.
    y, x = torch.meshgrid(torch.arange(6), torch.arange(7), indexing="ij")
    plane = 3 * y - 2 * x + 50
    pred = med_predict(plane, 0)
    assert torch.equal(pred[1:, 1:], plane[1:, 1:])
    # Rising along both axes the top-left cell is the smallest, and MED takes max(left, top).
    rising = 3 * y + 2 * x + 5
    pred = med_predict(rising, 0)
    assert torch.equal(pred[1:, 1:], torch.maximum(rising[1:, :-1], rising[:-1, 1:]))
    # A vertical edge: MED takes the cell above rather than averaging across the edge.
    edge = torch.tensor([[0, 0, 100, 100], [0, 0, 100, 100]])
    assert med_predict(edge, 0)[1].tolist() == [0, 0, 100, 100]


@pytest.mark.parametrize("shape", SHAPES + [(16, 16)])
@pytest.mark.parametrize("seed", range(4))
def test_residuals_and_row_reconstruction_round_trip(shape, seed):
    rng = np.random.default_rng(100 + seed)
    grid = rng.integers(-300, 300, size=shape).astype(np.int64)
    first = int(rng.integers(0, 255))
    residuals = med_residuals(grid, first)
    assert residuals.shape == grid.shape and residuals.dtype == np.int64
    expected = grid - np.array(med_reference(grid.tolist(), first))
    assert np.array_equal(residuals, expected)
    rows, above = [], None
    for r in residuals.tolist():
        row = med_reconstruct_row(r, above, first)
        assert all(isinstance(v, int) for v in row)
        rows.append(row)
        above = row
    assert rows == grid.tolist()


def test_reconstruct_row_of_a_first_row_chains_from_first():
    assert med_reconstruct_row([1, 2, -3], None, 10) == [11, 13, 10]
    assert med_reconstruct_row([], None, 10) == []
    # Second row: x = 0 predicts from above; later cells use MED of (left, above, above-left).
    above = [11, 13, 10]
    # x=0: 11 + 0; x=1: a=11, b=13, c=11 → c <= min → max = 13, +1 = 14;
    # x=2: a=14, b=10, c=13 → between → 14 + 10 − 13 = 11, −1 = 10.
    assert med_reconstruct_row([0, 1, -1], above, 99) == [11, 14, 10]


# ------------------------------------------------------------------ neighbour_mean_prediction


def test_neighbour_mean_first_block_is_empty():
    means = np.arange(16).reshape(4, 4)
    assert neighbour_mean_prediction(means, 2, 0, 0, 4) == 128
    assert neighbour_mean_prediction(means, 2, 0, 0, 2, empty=77) == 77


def test_neighbour_mean_above_only_and_left_only():
    means = np.array([[10, 20, 30, 40], [50, 60, 70, 80], [1, 2, 3, 4], [5, 6, 7, 8]])
    # A 4px block at (0, 4) in 2px cells: cells (0..1, 2..3); only the left column (cells (0,1), (1,1)).
    assert neighbour_mean_prediction(means, 2, 0, 4, 4) == (20 + 60) // 2
    # A 4px block at (4, 0): only the row above (cells (1, 0..1)).
    assert neighbour_mean_prediction(means, 2, 4, 0, 4) == (50 + 60) // 2
    # A 2px block in the first row: the one cell to its left.
    assert neighbour_mean_prediction(means, 2, 0, 6, 2) == 30


def test_neighbour_mean_both_sides():
    means = np.array([[10, 20, 30, 40], [50, 60, 70, 80], [1, 2, 3, 4], [5, 6, 7, 8]])
    # 4px block at (4, 4): above = cells (1, 2..3) = 70, 80; left = cells (2..3, 1) = 2, 6.
    assert neighbour_mean_prediction(means, 2, 4, 4, 4) == (70 + 80 + 2 + 6 + 2) // 4
    # 2px block at (2, 2): above (0, 1) = 20, left (1, 0) = 50.
    assert neighbour_mean_prediction(means, 2, 2, 2, 2) == 35


@pytest.mark.parametrize(
    "above, left, expected",
    [
        ((1, 2), (0, 0), 1),  # 3 / 4 = 0.75 → 1
        ((1, 1), (0, 0), 1),  # 2 / 4 = 0.5 → rounds half up
        ((1, 0), (0, 0), 0),  # 0.25 → 0
        ((3, 3), (3, 4), 3),  # 13 / 4 = 3.25 → 3
        ((3, 3), (4, 4), 4),  # 3.5 → 4
        ((254, 255), (255, 255), 255),
    ],
)
def test_neighbour_mean_rounds_to_nearest_half_up(above, left, expected):
    means = np.zeros((4, 4), dtype=np.int64)
    means[0, 1:3] = above  # row above a 2-cell block at cells (1..2, 1..2)
    means[1:3, 0] = left
    assert neighbour_mean_prediction(means, 1, 1, 1, 2) == expected


def test_neighbour_mean_returns_a_python_int_for_numpy_maps():
    means = np.full((2, 2), 9, dtype=np.int32)
    out = neighbour_mean_prediction(means, 4, 4, 4, 4)
    assert type(out) is int and out == 9


def test_the_list_grid_predicts_as_the_array_function():
    rng = np.random.default_rng(0)
    grid = NeighbourMeanGrid(32, 48, 4)
    means = np.zeros((8, 12), dtype=np.int64)
    for _ in range(200):
        n = int(rng.choice([4, 8, 16]))
        y, x = int(rng.integers(0, 32 // n)) * n, int(rng.integers(0, 48 // n)) * n
        assert grid.predict(y, x, n) == neighbour_mean_prediction(means, 4, y, x, n)
        value = int(rng.integers(0, 256))
        grid.set(y, x, n, value)
        means[y // 4 : (y + n) // 4, x // 4 : (x + n) // 4] = value
    assert grid.rows == means.tolist()
    assert NeighbourMeanGrid(8, 8, 4, empty=77).predict(0, 0, 8) == 77
