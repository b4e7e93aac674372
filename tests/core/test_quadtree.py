"""Quadtree partitions (split flags, tiling, coding order) and collage decoding over them."""

import random

import pytest
import torch

from neural_collages.core.codes import SparseCode
from neural_collages.core.quadtree import Leaf, Quadtree, QuadtreeCollage
from neural_collages.errors import ConfigurationError, FormatError

SIZE = (16, 24)
BLOCKS = (8, 4, 2)


def random_tree(seed, size=SIZE, blocks=BLOCKS, p=0.5):
    rng = random.Random(seed)
    return Quadtree.from_split(size, blocks, lambda level, y, x: rng.random() < p)


def owner_map(tree: Quadtree) -> torch.Tensor:
    """Which leaf covers each pixel (-1 for none); raises if two leaves overlap."""
    H, W = tree.image_size
    owner = torch.full((H, W), -1, dtype=torch.long)
    for i, leaf in enumerate(tree.leaves):
        n = tree.block_sizes[leaf.level]
        cell = owner[leaf.y : leaf.y + n, leaf.x : leaf.x + n]
        assert cell.shape == (n, n), "a leaf sticks out of the image"
        assert bool((cell == -1).all()), "two leaves overlap"
        cell[...] = i
    return owner


# ------------------------------------------------------------------ partitions


@pytest.mark.parametrize("seed", range(6))
def test_split_flags_round_trip(seed):
    tree = random_tree(seed)
    flags = tree.split_flags()
    assert set(flags) <= {0, 1}
    again = Quadtree.from_split_flags(SIZE, BLOCKS, flags)
    assert again.leaves == tree.leaves
    assert again.split_flags() == flags


@pytest.mark.parametrize("seed", range(6))
def test_leaves_tile_the_image_exactly_once(seed):
    tree = random_tree(seed)
    owner = owner_map(tree)
    assert bool((owner >= 0).all())
    for leaf in tree.leaves:
        n = tree.block_sizes[leaf.level]
        assert leaf.y % n == 0 and leaf.x % n == 0  # leaves sit on their level's grid
    area = sum(tree.block_sizes[l.level] ** 2 for l in tree.leaves)
    assert area == SIZE[0] * SIZE[1]


@pytest.mark.parametrize("seed", range(6))
def test_coding_order_is_causal(seed):
    """Every pixel directly above or to the left of a leaf belongs to an earlier leaf."""
    tree = random_tree(seed)
    owner = owner_map(tree)
    for i, leaf in enumerate(tree.leaves):
        n = tree.block_sizes[leaf.level]
        if leaf.y > 0:
            assert bool((owner[leaf.y - 1, leaf.x : leaf.x + n] < i).all())
        if leaf.x > 0:
            assert bool((owner[leaf.y : leaf.y + n, leaf.x - 1] < i).all())


def test_split_predicate_is_not_asked_at_the_last_level_and_flags_count_nodes():
    asked = []

    def split(level, y, x):
        asked.append(level)
        return True

    tree = Quadtree.from_split(SIZE, BLOCKS, split)
    roots = (16 // 8) * (24 // 8)
    assert max(asked) == len(BLOCKS) - 2
    assert len(asked) == roots * (1 + 4)
    assert all(leaf.level == 2 for leaf in tree.leaves) and len(tree.leaves) == (16 // 2) * (24 // 2)
    assert tree.split_flags() == [1] * len(asked)

    flat = Quadtree.from_split(SIZE, BLOCKS, lambda *a: False)
    assert flat.leaves == [Leaf(0, y, x) for y in (0, 8) for x in (0, 8, 16)]
    assert flat.split_flags() == [0] * roots
    assert Quadtree.from_split_flags(SIZE, BLOCKS, [0] * roots).leaves == flat.leaves


def test_z_order_inside_a_root():
    tree = Quadtree.from_split((8, 8), (8, 4, 2), lambda level, y, x: (level, y, x) in {(0, 0, 0), (1, 0, 4)})
    assert tree.leaves == [
        Leaf(1, 0, 0),
        Leaf(2, 0, 4), Leaf(2, 0, 6), Leaf(2, 2, 4), Leaf(2, 2, 6),
        Leaf(1, 4, 0),
        Leaf(1, 4, 4),
    ]
    assert tree.split_flags() == [1, 0, 1, 0, 0]


def test_a_single_level_tree_has_no_flags():
    tree = Quadtree.from_split_flags((8, 16), (8,), [])
    assert tree.leaves == [Leaf(0, 0, 0), Leaf(0, 0, 8)]
    assert tree.split_flags() == []
    with pytest.raises(FormatError):
        Quadtree.from_split_flags((8, 16), (8,), [0])


@pytest.mark.parametrize("seed", range(4))
def test_bad_flag_streams_raise_format_error(seed):
    flags = random_tree(seed).split_flags()
    with pytest.raises(FormatError, match="early"):
        Quadtree.from_split_flags(SIZE, BLOCKS, flags[:-1])
    with pytest.raises(FormatError):
        Quadtree.from_split_flags(SIZE, BLOCKS, [])
    with pytest.raises(FormatError, match="left over"):
        Quadtree.from_split_flags(SIZE, BLOCKS, flags + [0])
    for bad in (2, -1):
        corrupt = list(flags)
        corrupt[len(corrupt) // 2] = bad
        with pytest.raises(FormatError):
            Quadtree.from_split_flags(SIZE, BLOCKS, corrupt)


@pytest.mark.parametrize("blocks", [(), (8, 3), (8, 2), (4, 8), (0,), (8, 4, 0)])
def test_block_sizes_must_be_positive_and_halve(blocks):
    with pytest.raises(ConfigurationError):
        Quadtree((16, 16), blocks, [])
    with pytest.raises(ConfigurationError):
        QuadtreeCollage((16, 16), blocks)


@pytest.mark.parametrize("size", [(12, 16), (16, 20), (0, 16)])
def test_image_size_must_be_a_multiple_of_the_root_blocks(size):
    with pytest.raises(ConfigurationError):
        Quadtree(size, (8, 4), [])


def test_leaf_range_ids():
    tree = Quadtree.from_split((8, 8), (8, 4, 2), lambda level, y, x: (level, y, x) in {(0, 0, 0), (1, 0, 4)})
    order, ids = tree.leaf_range_ids(1)
    assert order.tolist() == [0, 5, 6]
    assert ids.tolist() == [0, 2, 3]  # row-major in the 2x2 grid of 4px cells
    order, ids = tree.leaf_range_ids(2)
    assert order.tolist() == [1, 2, 3, 4]
    assert ids.tolist() == [2, 3, 6, 7]  # (0,4), (0,6), (2,4), (2,6) in the 4x4 grid of 2px cells
    order, ids = tree.leaf_range_ids(0)
    assert order.numel() == 0 and ids.numel() == 0 and ids.dtype == torch.long


# ------------------------------------------------------------------ decoding


def random_codes(qt: QuadtreeCollage, tree: Quadtree, seed: int, k: int = 1, s: float = 0.45):
    g = torch.Generator().manual_seed(seed)
    codes = []
    for level, op in enumerate(qt.operators):
        _, ids = tree.leaf_range_ids(level)
        n = ids.numel()
        if n == 0:
            codes.append(None)
            continue
        index = torch.randint(0, op.num_candidates, (1, 1, n, k), generator=g)
        scale = (2 * torch.rand(1, 1, n, k, generator=g, dtype=torch.float64) - 1) * s / k
        bias = torch.rand(1, 1, n, generator=g, dtype=torch.float64)
        codes.append(SparseCode(index, scale, bias))
    return codes


def reference_step(qt: QuadtreeCollage, tree: Quadtree, codes, z: torch.Tensor, scale: int) -> torch.Tensor:
    """Each level's full operator step (a code on all its ranges), kept only on that level's leaves."""
    out = torch.full_like(z, float("nan"))
    for level, (op, code) in enumerate(zip(qt.operators, codes)):
        if code is None:
            continue
        _, ids = tree.leaf_range_ids(level)
        R, k = op.num_ranges, code.k
        index = torch.zeros(1, 1, R, k, dtype=torch.long)
        scales = torch.zeros(1, 1, R, k, dtype=z.dtype)
        bias = torch.zeros(1, 1, R, dtype=z.dtype)
        index[:, :, ids] = code.index
        scales[:, :, ids] = code.scale
        bias[:, :, ids] = code.bias
        full = op.step(z, SparseCode(index, scales, bias), scale)
        n = scale * qt.block_sizes[level]
        for i in tree.leaf_range_ids(level)[0].tolist():
            leaf = tree.leaves[i]
            y, x = scale * leaf.y, scale * leaf.x
            out[..., y : y + n, x : x + n] = full[..., y : y + n, x : x + n]
    return out


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("scale", [1, 2])
def test_decode_equals_the_reference_composition(seed, scale):
    tree = random_tree(seed)
    qt = QuadtreeCollage(SIZE, BLOCKS)
    codes = random_codes(qt, tree, seed, k=2)
    steps = 5
    z, stats = qt.decode(tree, codes, scale=scale, steps=steps, tol=0.0, return_trajectory=True)
    assert z.shape == (1, 1, scale * SIZE[0], scale * SIZE[1]) and z.dtype == torch.float64
    assert stats.steps == steps and len(stats.trajectory) == steps + 1
    ref = torch.zeros_like(z)
    assert torch.equal(stats.trajectory[0], ref)
    for i in range(steps):
        ref = reference_step(qt, tree, codes, ref, scale)
        assert not torch.isnan(ref).any()  # the leaves cover every pixel
        torch.testing.assert_close(stats.trajectory[i + 1], ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(z, ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("seed", [1, 2])
def test_decode_is_contractive_the_fixed_point_does_not_depend_on_the_start(seed):
    tree = random_tree(seed)
    qt = QuadtreeCollage(SIZE, BLOCKS)
    codes = random_codes(qt, tree, seed)
    from_zero, s0 = qt.decode(tree, codes, steps=300, tol=1e-13)
    start = torch.rand(1, 1, *SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 255
    from_noise, s1 = qt.decode(tree, codes, steps=300, tol=1e-13, init=start)
    assert s0.converged and s1.converged
    torch.testing.assert_close(from_zero, from_noise, atol=1e-10, rtol=0)
    # It is a fixed point of the reference step.
    torch.testing.assert_close(reference_step(qt, tree, codes, from_zero, 1), from_zero, atol=1e-12, rtol=0)


def test_centred_leaf_bias_is_the_leaf_mean_of_the_fixed_point():
    tree = random_tree(4)
    qt = QuadtreeCollage(SIZE, BLOCKS, centred=True)
    codes = random_codes(qt, tree, 4)
    z, stats = qt.decode(tree, codes, steps=300, tol=1e-13)
    assert stats.converged
    for level, code in enumerate(codes):
        if code is None:
            continue
        n = BLOCKS[level]
        for j, i in enumerate(tree.leaf_range_ids(level)[0].tolist()):
            leaf = tree.leaves[i]
            mean = z[0, 0, leaf.y : leaf.y + n, leaf.x : leaf.x + n].mean()
            torch.testing.assert_close(mean, code.bias[0, 0, j], atol=1e-9, rtol=0)


def test_decode_rejects_a_mismatched_tree_or_a_missing_code():
    tree = random_tree(0)
    qt = QuadtreeCollage(SIZE, BLOCKS)
    codes = random_codes(qt, tree, 0)
    other = random_tree(0, size=(16, 16))
    with pytest.raises(ConfigurationError):
        qt.decode(other, codes)
    level = next(l for l, c in enumerate(codes) if c is not None)
    missing = list(codes)
    missing[level] = None
    with pytest.raises(ConfigurationError):
        qt.decode(tree, missing)


def test_one_domain_stride_per_block_size():
    with pytest.raises(ConfigurationError):
        QuadtreeCollage(SIZE, BLOCKS, domain_strides=[4, 2])
    qt = QuadtreeCollage((8, 8), (8, 4, 2))
    assert qt.usable == [False, True, True]  # 16px domains do not fit an 8px image
    assert qt.operators[0].lattices[0].cell_size == (8, 8)
    assert [op.range_size for op in qt.operators] == [(8, 8), (4, 4), (2, 2)]


def test_decode_needs_exactly_one_code_per_level():
    """A missing trailing level must not leave uninitialised pixels in the output (it once did)."""
    tree = Quadtree.from_split((8, 8), (4, 2), lambda level, y, x: (y, x) == (0, 0))
    qt = QuadtreeCollage((8, 8), (4, 2))
    n = tree.leaf_range_ids(0)[1].numel()
    code0 = SparseCode(torch.zeros(1, 1, n, 1, dtype=torch.long), torch.zeros(1, 1, n, 1), torch.full((1, 1, n), 7.0))
    with pytest.raises(ConfigurationError, match="one code per level"):
        qt.decode(tree, [code0], steps=3)
    with pytest.raises(ConfigurationError, match="one code per level"):
        qt.decode(tree, [code0, None, None], steps=3)


@pytest.mark.parametrize("centred", [False, True])
def test_chunked_decode_of_large_outputs_is_bit_identical_to_the_prepared_decode(monkeypatch, centred):
    # Outputs above PREPARED_PIXELS rebuild their gather indices per step in chunks (bounded
    # memory); forcing that path on a small image must not change a single bit.
    import neural_collages.core.quadtree as quadtree

    tree = random_tree(5)
    qt = QuadtreeCollage(SIZE, BLOCKS, centred=centred)
    codes = random_codes(qt, tree, 5, k=2)
    whole, _ = qt.decode(tree, codes, scale=2, steps=6, tol=0.0)
    monkeypatch.setattr(quadtree, "PREPARED_PIXELS", 16)
    monkeypatch.setattr(quadtree, "CHUNK_PIXELS", 40)  # a few ranges per chunk, not a multiple of any level
    chunked, _ = qt.decode(tree, codes, scale=2, steps=6, tol=0.0)
    assert torch.equal(whole, chunked)
