import pytest
import torch

from neural_collages.errors import ConfigurationError
from neural_collages.imaging.tensors import (
    CropLayout,
    crop_to,
    from_crops,
    pad_to_multiple,
    split_into_crops,
    stitch_crops,
    to_crops,
)


@pytest.mark.parametrize("mode", ["replicate", "reflect"])
def test_pad_crop_round_trip(mode):
    x = torch.rand(2, 3, 7, 10)
    padded, size = pad_to_multiple(x, (4, 8), mode=mode)
    assert padded.shape == (2, 3, 8, 16) and size == (7, 10)
    assert torch.equal(crop_to(padded, size), x)
    single, size = pad_to_multiple(x[0], 5, mode=mode)
    assert single.shape == (3, 10, 10)
    assert torch.equal(crop_to(single, size), x[0])
    same, _ = pad_to_multiple(x, 1, mode=mode)
    assert torch.equal(same, x)


def test_pad_values():
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    rep, _ = pad_to_multiple(x, (1, 8))
    assert rep[0, 0].tolist() == [1, 2, 3, 3, 3, 3, 3, 3]
    ref, _ = pad_to_multiple(x, (1, 8), mode="reflect")
    # Repeated reflection without repeating the edge: 1 2 3 2 1 2 3 2
    assert ref[0, 0].tolist() == [1, 2, 3, 2, 1, 2, 3, 2]


def test_reflect_pad_on_one_pixel_image():
    x = torch.tensor([[[0.25]]])
    padded, size = pad_to_multiple(x, 4, mode="reflect")
    assert padded.shape == (1, 4, 4) and size == (1, 1)
    assert torch.all(padded == 0.25)
    u8, _ = pad_to_multiple(torch.tensor([[[7]]], dtype=torch.uint8), 3, mode="reflect")
    assert u8.dtype == torch.uint8 and torch.all(u8 == 7)


def test_pad_and_crop_errors():
    with pytest.raises(ConfigurationError):
        pad_to_multiple(torch.rand(3, 4, 4), 0)
    with pytest.raises(ConfigurationError):
        pad_to_multiple(torch.rand(3, 4, 4), 2, mode="circular")
    with pytest.raises(ConfigurationError):
        pad_to_multiple(torch.rand(4, 4), 2)
    with pytest.raises(ConfigurationError):
        crop_to(torch.rand(3, 4, 4), (5, 4))


def test_split_stitch_round_trip_odd_size():
    x = torch.rand(3, 37, 50)
    crops, layout = split_into_crops(x, 16)
    assert layout == CropLayout(grid=(3, 4), crop_size=(16, 16), image_size=(37, 50))
    assert crops.shape == (12, 3, 16, 16)
    # Row-major order: crop 1 is the second crop of the first row.
    assert torch.equal(crops[1], x[:, :16, 16:32])
    assert torch.equal(crops[4][:, :, :], x[:, 16:32, :16])
    assert torch.equal(stitch_crops(crops, layout), x)

    rect, rect_layout = split_into_crops(x.unsqueeze(0), (8, 20))
    assert rect.shape == (5 * 3, 3, 8, 20)
    assert torch.equal(stitch_crops(rect, rect_layout), x)


def test_stitch_at_scale_two():
    x = torch.rand(1, 37, 50)
    crops, layout = split_into_crops(x, 16)
    up = crops.repeat_interleave(2, -2).repeat_interleave(2, -1)
    stitched = stitch_crops(up, layout, scale=2)
    expected = x.repeat_interleave(2, -2).repeat_interleave(2, -1)
    assert stitched.shape == (1, 74, 100)
    assert torch.equal(stitched, expected)


def test_stitch_validates_shapes():
    crops, layout = split_into_crops(torch.rand(3, 20, 20), 8)
    with pytest.raises(ConfigurationError):
        stitch_crops(crops[:-1], layout)
    with pytest.raises(ConfigurationError):
        stitch_crops(crops, layout, scale=2)
    with pytest.raises(ConfigurationError):
        stitch_crops(crops[:, :, :4], layout)
    with pytest.raises(ConfigurationError):
        split_into_crops(torch.rand(2, 3, 8, 8), 4)


def test_to_crops_and_from_crops_invert_each_other_for_batches():
    x = torch.arange(2 * 3 * 16 * 24, dtype=torch.float32).reshape(2, 3, 16, 24)
    crops = to_crops(x, 8)
    assert crops.shape == (2 * 2 * 3, 3, 8, 8)
    assert torch.equal(crops[4], x[0, :, 8:16, 8:16])  # row-major per image: image 0, row 1, col 1
    assert torch.equal(from_crops(crops, 2, (2, 3)), x)
    with pytest.raises(ConfigurationError, match="not tiled"):
        to_crops(x, 5)
    with pytest.raises(ConfigurationError, match="need 12 crops"):
        from_crops(crops[:-1], 2, (2, 3))
