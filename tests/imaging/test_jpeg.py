import io

import torch
from PIL import Image

from neural_collages.imaging.jpeg import jpeg_at_most
from neural_collages.imaging.io import to_uint8


def _jpeg(image, quality):
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image).permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality,
                                                                    optimize=True)
    return buffer.getvalue()


def test_jpeg_bisection_finds_the_best_quality_that_fits():
    torch.manual_seed(0)
    image = torch.rand(3, 40, 40)
    data, quality = jpeg_at_most(image, 2000)
    assert len(data) <= 2000 and data == _jpeg(image, quality)
    assert quality == 95 or len(_jpeg(image, quality + 1)) > 2000
    assert jpeg_at_most(image, 10) is None
    grey, _ = jpeg_at_most(image[:1], 10**6)
    assert Image.open(io.BytesIO(grey)).mode == "L"
