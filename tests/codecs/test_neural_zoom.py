"""Zoomed neural decodes (payload version 2) resample the learned patches smoothly: the 1x decode
is unchanged, every scale still pools to it, and the zoom is closer to a true larger image."""

import torch
import torch.nn.functional as F

from neural_collages.assets import sample_image_path
from neural_collages.codecs import compress, decompress, neural
from neural_collages.coding.container import unpack
from neural_collages.imaging.io import load_image
from neural_collages.imaging.metrics import psnr


def test_the_zoom_is_closer_to_the_true_image_than_enlarged_patch_pixels():
    truth = load_image(sample_image_path())[:, :256, 128:384].contiguous()
    small = F.avg_pool2d(truth[None], 4)[0]
    data = compress(small, "neural", 3, exact_model=True)
    header, payload = unpack(data)
    config = neural.config_from_params(header.params)
    assert config["aux_interpolation"] == "bicubic"
    smooth = neural.decode_parts(header, payload, config, scale=4)
    nearest = neural.decode_parts(header, payload, {**config, "aux_interpolation": "nearest"}, scale=4)
    assert torch.equal(decompress(data), neural.decode_parts(header, payload, {**config, "aux_interpolation": "nearest"}))
    assert psnr(smooth, truth) > psnr(nearest, truth) + 0.1
    # Pooling the 4x decode gives about the 1x decode: the planes pool exactly (tested with the
    # deblocking); RGB adds 8-bit rounding, clipping and the chroma interpolation of each scale.
    for zoomed in (smooth, nearest):
        assert (F.avg_pool2d(zoomed[None], 4)[0] - decompress(data)).abs().mean() <= 1 / 255
