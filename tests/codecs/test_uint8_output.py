"""8-bit decodes (``decompress(dtype=torch.uint8)``): the same levels as the float decode, every codec and path."""

import numpy as np
import pytest
import torch
from PIL import Image

from neural_collages import codecs
from neural_collages.apps.cli import main
from neural_collages.codecs.fractal_art import encode_art
from neural_collages.codecs.neural import codec as neural_codec
from neural_collages.core import step
from neural_collages.errors import ConfigurationError
from neural_collages.fractal_art import FractalizeOptions, fractalize
from neural_collages.imaging.io import to_uint8


def _smooth(channels: int, size=(40, 56)) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, channels, size[0] // 8, size[1] // 8), size=size,
                                        mode="bicubic", align_corners=False)
    return (x[0] + 0.05 * torch.rand(channels, *size)).clamp(0, 1)


FILES = {
    "pifs-rgb": lambda: codecs.compress(_smooth(3), "pifs", 3),
    "pifs-grey": lambda: codecs.compress(_smooth(1), "pifs", 3),
    "neural-rgb": lambda: codecs.compress(_smooth(3), "neural", 2),
    "neural-grey": lambda: codecs.compress(_smooth(1), "neural", 2),
    "fractal-art": lambda: encode_art(fractalize(_smooth(3), FractalizeOptions(aux=2, steps=2))[0]),
}


@pytest.fixture(scope="module", params=sorted(FILES))
def data(request):
    return FILES[request.param]()


@pytest.mark.parametrize("scale", [1, 3])
def test_uint8_decode_holds_the_float_decodes_levels(data, scale):
    reference = codecs.decompress(data, scale=scale)
    image = codecs.decompress(data, scale=scale, dtype=torch.uint8)
    assert image.dtype == torch.uint8 and image.shape == reference.shape
    assert torch.equal(image, to_uint8(reference))


def test_uint8_decode_of_the_banded_large_paths(data, monkeypatch):
    # Large outputs take other code paths (neural bands, fractal-art pooled-buffer iteration,
    # colour strips): force them on a small file and compare with the float decode of the same path.
    monkeypatch.setattr(neural_codec, "WHOLE_DECODE_PIXELS", 0)
    monkeypatch.setattr(step, "DENSE_BAND_VALUES", 500)
    reference = codecs.decompress(data, scale=2)
    image = codecs.decompress(data, scale=2, dtype=torch.uint8)
    assert torch.equal(image, to_uint8(reference))


def test_trajectory_frames_are_uint8_too(data):
    image, frames = codecs.decompress(data, return_trajectory=True, dtype=torch.uint8)
    ref_image, ref_frames = codecs.decompress(data, return_trajectory=True)
    assert len(frames) == len(ref_frames) and all(f.dtype == torch.uint8 for f in frames)
    assert torch.equal(image, to_uint8(ref_image)) and torch.equal(frames[0], to_uint8(ref_frames[0]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.int16, "uint8", None])
def test_other_output_types_are_refused_before_decoding(dtype):
    data = FILES["pifs-grey"]()
    with pytest.raises(ConfigurationError, match="float32 or torch.uint8"):
        codecs.decompress(data, dtype=dtype)


def test_cli_decompress_writes_the_float_decodes_pixels(tmp_path):
    # The CLI decodes to uint8 (a quarter of the memory); the PNG must hold what the float API returns.
    data = FILES["pifs-rgb"]()
    (tmp_path / "a.clg").write_bytes(data)
    assert main(["decompress", str(tmp_path / "a.clg"), str(tmp_path / "a.png"), "--scale", "2"]) == 0
    written = np.asarray(Image.open(tmp_path / "a.png"))
    expected = to_uint8(codecs.decompress(data, scale=2)).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(written, expected)
