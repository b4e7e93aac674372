"""Geometry of a collage: isometries, range grids, domain lattices and candidate index tables."""

import itertools
import math

import pytest
import torch

from neural_collages.core.operator import CollageOperator
from neural_collages.core.partitions import (
    ISOMETRY_NAMES,
    DomainLattice,
    RangeGrid,
    apply_isometry,
    build_candidate_tables,
    isometry_index,
    isometry_swaps_axes,
)
from neural_collages.errors import ConfigurationError

# ------------------------------------------------------------------ isometries


def square(n=4):
    return torch.arange(n * n).reshape(n, n)


def test_there_are_eight_distinct_isometries_each_a_pixel_bijection():
    block = square(4)
    images = [apply_isometry(block, k) for k in range(8)]
    for image in images:
        assert image.shape == block.shape
        assert torch.equal(image.flatten().sort().values, block.flatten())  # a permutation of pixels
    assert len({tuple(image.flatten().tolist()) for image in images}) == 8


def test_isometries_form_a_group():
    block = square(4)
    table = {tuple(apply_isometry(block, k).flatten().tolist()): k for k in range(8)}
    for a, b in itertools.product(range(8), repeat=2):
        composed = apply_isometry(apply_isometry(block, a), b)
        assert tuple(composed.flatten().tolist()) in table  # closure
    assert torch.equal(apply_isometry(block, 0), block)  # identity
    for a in range(8):  # every element has an inverse
        assert any(torch.equal(apply_isometry(apply_isometry(block, a), b), block) for b in range(8))


def test_isometries_match_their_names():
    block = square(3)
    expected = {
        "identity": block,
        "rot90": torch.rot90(block, 1),
        "rot180": torch.rot90(block, 2),
        "rot270": torch.rot90(block, 3),
        "flip": torch.flip(block, dims=(-1,)),
        "flip_rot90": torch.rot90(torch.flip(block, dims=(-1,)), 1),
        "flip_rot180": torch.flip(block, dims=(-2,)),  # a left-right mirror then a half turn
        "flip_rot270": torch.rot90(torch.flip(block, dims=(-1,)), 3),
    }
    for name, want in expected.items():
        assert torch.equal(apply_isometry(block, isometry_index(name)), want), name
    # flip_rot90 is the transpose, flip_rot270 the anti-transpose.
    assert torch.equal(apply_isometry(block, 5), block.T)
    assert torch.equal(apply_isometry(block, 7), block.flip(-1).flip(-2).T)


def test_isometries_act_on_the_last_two_dims_of_a_batch():
    batch = torch.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    for k in range(8):
        out = apply_isometry(batch, k)
        for i, j in itertools.product(range(2), range(3)):
            assert torch.equal(out[i, j], apply_isometry(batch[i, j], k))


def test_swaps_axes_matches_the_shape_of_a_rectangular_block():
    block = torch.arange(6).reshape(2, 3)
    for k in range(8):
        out = apply_isometry(block, k)
        assert out.shape == ((3, 2) if isometry_swaps_axes(k) else (2, 3))


def test_isometry_index_by_name_and_number():
    for k, name in enumerate(ISOMETRY_NAMES):
        assert isometry_index(name) == k
        assert isometry_index(k) == k


@pytest.mark.parametrize("bad", ["rot45", "Identity", "", 8, -1, True, False, 1.0, None, (0,)])
def test_isometry_index_rejects_anything_else(bad):
    with pytest.raises(ConfigurationError):
        isometry_index(bad)


# ------------------------------------------------------------------ range grids and domain lattices


def test_range_grid_counts_and_origins():
    grid = RangeGrid((8, 12), (2, 3))
    assert grid.grid == (4, 4)
    assert grid.count == 16
    origins = grid.origins()
    assert origins == [(y, x) for y in (0, 2, 4, 6) for x in (0, 3, 6, 9)]
    # The cells tile the image exactly once.
    cover = torch.zeros(8, 12, dtype=torch.long)
    for y, x in origins:
        cover[y : y + 2, x : x + 3] += 1
    assert bool((cover == 1).all())


@pytest.mark.parametrize(
    "image, cell, stride, rng, grid",
    [
        ((8, 12), (4, 6), (2, 3), (2, 3), (3, 3)),
        ((8, 8), (4, 4), (4, 4), (2, 2), (2, 2)),
        ((8, 8), (8, 8), (8, 8), (4, 4), (1, 1)),
        ((12, 8), (6, 8), (2, 1), (2, 2), (4, 1)),
        ((9, 9), (4, 4), (3, 3), (2, 2), (2, 2)),  # a lattice need not reach the far edge
    ],
)
def test_domain_lattice_counts_pool_and_origins(image, cell, stride, rng, grid):
    lattice = DomainLattice(image, cell, stride, rng)
    assert lattice.grid == grid
    assert lattice.count == grid[0] * grid[1]
    assert lattice.pool == (cell[0] // rng[0], cell[1] // rng[1])
    origins = lattice.origins()
    assert len(origins) == lattice.count
    assert origins == [(i * stride[0], j * stride[1]) for i in range(grid[0]) for j in range(grid[1])]
    for y, x in origins:  # every cell lies inside the image
        assert y + cell[0] <= image[0] and x + cell[1] <= image[1]
    # ... and the next lattice step would not.
    assert grid[0] * stride[0] + cell[0] > image[0]
    assert grid[1] * stride[1] + cell[1] > image[1]


@pytest.mark.parametrize(
    "image, cell, stride, rng, scale, expected",
    [
        ((8, 8), (4, 4), (4, 4), (2, 2), 1, (2, 2)),  # aligned: stride = kernel
        ((8, 8), (4, 4), (2, 2), (2, 2), 1, (2, 2)),  # half overlap, still aligned to the kernel
        ((8, 8), (4, 4), (1, 1), (2, 2), 1, (1, 1)),  # every pixel offset
        ((8, 8), (4, 4), (1, 1), (2, 2), 2, (2, 2)),  # at scale 2 the origins are even again
        ((9, 9), (4, 4), (3, 3), (2, 2), 1, (1, 1)),
        ((9, 9), (4, 4), (3, 3), (2, 2), 2, (2, 2)),
        ((8, 8), (8, 8), (8, 8), (2, 2), 1, (4, 4)),  # one cell: its pooling is never strided away
        ((12, 8), (6, 8), (2, 1), (2, 2), 1, (1, 4)),  # one cell across: the full 4-wide pooling
        ((12, 8), (8, 8), (4, 8), (2, 2), 1, (4, 4)),
        ((12, 12), (12, 6), (6, 3), (2, 2), 1, (6, 3)),
    ],
)
def test_pooled_stride(image, cell, stride, rng, scale, expected):
    lattice = DomainLattice(image, cell, stride, rng)
    th, tw = lattice.pooled_stride(scale)
    assert (th, tw) == expected
    ah, aw = lattice.pool
    # Every pooled pixel a domain reads, scale·origin + i·pool, lies on the pooling stride.
    assert ah % th == 0 and aw % tw == 0
    for y, x in lattice.origins():
        assert (scale * y) % th == 0 and (scale * x) % tw == 0
    # ... and it is the coarsest such stride.
    origins_h = [scale * y for y, _ in lattice.origins()]
    origins_w = [scale * x for _, x in lattice.origins()]
    assert th == math.gcd(ah, *origins_h)
    assert tw == math.gcd(aw, *origins_w)


# ------------------------------------------------------------------ candidate tables

OPERATORS = {
    "pifs": dict(size=(8, 12), channels=1, range_size=2, domain_size=4, domain_stride=2, isometries=range(8)),
    "multiscale": dict(
        size=(12, 8), channels=2, range_size=2, domain_size=[4, (6, 8)], domain_stride=[3, (2, 1)],
        isometries=("identity", "rot180", "flip", "rot90"), aux_patches=2, aux_patch_size=4,
    ),
    "rect": dict(
        size=(6, 8), channels=3, range_size=(3, 2), domain_size=(6, 4), domain_stride=(3, 2),
        isometries=("identity", "flip", "rot180", "flip_rot180"),
    ),
    "whole_image": dict(size=(8, 8), channels=1, range_size=4, domain_size=(8, 8), isometries=range(8)),
}


def reference_candidates(op: CollageOperator, z: torch.Tensor, scale: int) -> torch.Tensor:
    """Each domain cell cut out, average-pooled to the range size, turned by each isometry; then aux."""
    B, C = z.shape[:2]
    ph, pw = scale * op.range_size[0], scale * op.range_size[1]
    out = []
    for lattice in op.lattices:
        dh, dw = lattice.cell_size
        for y, x in lattice.origins():
            cell = z[:, :, scale * y : scale * (y + dh), scale * x : scale * (x + dw)]
            pooled = torch.nn.functional.adaptive_avg_pool2d(cell, (ph, pw))
            for iso in op.isometries:
                out.append(apply_isometry(pooled, iso).reshape(B, C, ph * pw))
    for patch in op.aux_patches:
        up = patch.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
        pooled = torch.nn.functional.adaptive_avg_pool2d(up, (ph, pw)).expand(C, ph, pw)
        out.append(pooled.reshape(1, C, ph * pw).expand(B, -1, -1))
    return torch.stack(out, dim=2)


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("scale", [1, 2])
def test_candidates_match_a_direct_loop(name, scale):
    torch.manual_seed(0)
    op = CollageOperator(**OPERATORS[name]).double()
    H, W = op.size
    z = torch.rand(2, op.channels, scale * H, scale * W, dtype=torch.float64)
    got = op.candidates(z, scale)
    assert got.shape == (2, op.channels, op.num_candidates, op.range_pixels(scale))
    torch.testing.assert_close(got, reference_candidates(op, z, scale), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", OPERATORS)
def test_rows_gather_the_candidates_from_the_pooled_buffer(name):
    torch.manual_seed(1)
    op = CollageOperator(**OPERATORS[name]).double()
    scale = 1
    tables = op.tables(scale)
    z = torch.rand(1, op.channels, *op.size, dtype=torch.float64)
    buffer = op.pooled_buffer(z, scale)
    assert buffer.shape[-1] == tables.buffer_length
    reference = reference_candidates(op, z, scale)
    D, P = op.num_candidates, op.range_pixels(scale)
    rows = tables.rows(torch.arange(D))
    assert rows.shape == (D, P) and rows.dtype == torch.long
    assert int(rows.min()) >= 0 and int(rows.max()) < tables.buffer_length
    torch.testing.assert_close(buffer[:, :, rows], reference, atol=1e-12, rtol=0)
    # Any index shape: rows of a (2, 3) grid of candidate numbers are the rows of those numbers.
    index = torch.randint(0, D, (2, 3))
    assert torch.equal(tables.rows(index), rows[index])
    # Auxiliary patches follow the domains, P positions each, at aux_offset.
    n_dom = op.num_domains * len(op.isometries)
    for j in range(op.num_aux):
        assert torch.equal(rows[n_dom + j], tables.aux_offset + j * P + torch.arange(P))
    assert tables.buffer_length == tables.aux_offset + op.num_aux * P
    assert tables.aux_offset == sum(h * w for h, w in tables.buffer_shapes)


def test_buffer_layout_of_a_small_operator():
    lattices = [DomainLattice((8, 8), (4, 4), (4, 4), (2, 2)), DomainLattice((8, 8), (8, 8), (8, 8), (2, 2))]
    tables = build_candidate_tables(lattices, [0, 2], RangeGrid((8, 8), (2, 2)), num_aux=3, scale=1)
    assert tables.pool_kernels == [(2, 2), (4, 4)]
    assert tables.pool_strides == [(2, 2), (4, 4)]
    assert tables.buffer_shapes == [(4, 4), (2, 2)]
    assert tables.buffer_offsets == [0, 16]
    assert tables.aux_offset == 20 and tables.num_aux == 3
    assert tables.buffer_length == 20 + 3 * 4
    assert tables.num_domains == 5 and tables.num_isometries == 2
    assert tables.domain_starts.tolist() == [0, 2, 8, 10, 16]
    assert tables.domain_lattice.tolist() == [0, 0, 0, 0, 1]
    # Identity of a 2x2 pooled block in a 4-wide buffer: offsets 0, 1, 4, 5; a half turn reverses them.
    assert tables.local_offsets[0, 0].tolist() == [0, 1, 4, 5]
    assert tables.local_offsets[0, 1].tolist() == [5, 4, 1, 0]
    # Candidate 3 = domain 1 under the half turn.
    assert tables.rows(torch.tensor(3)).tolist() == [7, 6, 3, 2]


@pytest.mark.parametrize("scale", [1, 2, 3])
def test_range_pixel_order_maps_raster_positions_to_range_slots(scale):
    op = CollageOperator(**OPERATORS["rect"]).double()
    tables = op.tables(scale)
    H, W = op.size
    order = tables.range_pixel_order
    assert order.shape == (scale * H * scale * W,)
    assert torch.equal(order.sort().values, torch.arange(order.numel()))  # a permutation
    z = torch.rand(2, op.channels, scale * H, scale * W, dtype=torch.float64)
    ranges = op.ranges(z, scale).reshape(2, op.channels, -1)
    assert torch.equal(ranges[..., order], z.reshape(2, op.channels, -1))


def test_tables_are_built_once_and_cached():
    op = CollageOperator(**OPERATORS["pifs"])
    assert op.tables(2) is op.tables(2)
    assert op.tables(1) is not op.tables(2)
    with pytest.raises(ConfigurationError):
        op.tables(0)


@pytest.mark.parametrize("size,cell,stride", [((16, 24), (4, 4), (2, 4)), ((8, 8), (8, 8), (1, 1)), ((6, 9), (4, 4), (3, 2))])
def test_origin_table_lists_the_origins(size, cell, stride):
    lattice = DomainLattice(size, cell, stride, (2, 2))
    assert lattice.origin_table().tolist() == [list(o) for o in lattice.origins()]
