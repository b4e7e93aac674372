"""Fractalizing: the closed form and the fine-tuning lower the losses, codes stay contractive,
the render is scale-consistent and independent of where the decode starts."""

import pytest
import torch
import torch.nn.functional as F

from neural_collages.assets import sample_image_path
from neural_collages.codecs.fractal_art import render
from neural_collages.errors import ConfigurationError
from neural_collages.fractal_art import FractalizeOptions, decode_from_noise, fractalize, project_l1_ball, zoom_frames
from neural_collages.imaging.io import load_image


@pytest.fixture(scope="module")
def image():
    x = load_image(sample_image_path())
    return F.avg_pool2d(x.unsqueeze(0), 2)[0, :, :96, :120]  # 120x96: not square, several ranges


@pytest.fixture(scope="module")
def fitted(image):
    return fractalize(image, FractalizeOptions(steps=40))


def test_l1_projection_is_the_euclidean_projection():
    torch.manual_seed(0)
    w = torch.randn(200, 8) * 0.5
    p = project_l1_ball(w, 0.9)
    assert (p.abs().sum(-1) <= 0.9 + 1e-5).all()
    inside = w.abs().sum(-1) <= 0.9
    assert torch.equal(p[inside], w[inside])
    outside = ~inside
    torch.testing.assert_close(p[outside].abs().sum(-1), torch.full((int(outside.sum()),), 0.9), atol=1e-5, rtol=0)
    # Optimality: no random point of the ball is closer to w than its projection.
    for _ in range(50):
        q = torch.randn(200, 8)
        q = q / q.abs().sum(-1, keepdim=True) * 0.9 * torch.rand(200, 1)
        assert ((w - p).pow(2).sum(-1) <= (w - q).pow(2).sum(-1) + 1e-6).all()


def test_fitting_lowers_the_collage_loss_and_the_reconstruction_error(image, fitted):
    art, report = fitted
    op = art.operator()
    x = image.unsqueeze(0)  # 120x96 is whole 8-px cells: no padding
    flat = type(art.code)(torch.zeros_like(art.code.weights), op.ranges(x).mean(-1))  # each range its mean
    assert report.collage_loss_closed_form < 0.9 * float(op.collage_loss(x, flat))
    assert report.mse < report.mse_closed_form  # fine-tuning the fixed point pays
    assert report.psnr > 15


def test_the_code_is_contractive_and_its_fixed_point_does_not_depend_on_the_start(fitted):
    art, _ = fitted
    op = art.operator()
    assert float(op.lipschitz_bound(art.code).max()) <= art.config.s_max + 1e-6
    from_zero = render(art, 1, steps=80)
    from_noise = render(art, 1, init=torch.rand(1, 3, *art.config.padded) * 4 - 2, steps=80)
    torch.testing.assert_close(from_zero, from_noise, atol=1e-4, rtol=0)


def test_zoomed_render_pools_to_the_1x_render(fitted):
    art, _ = fitted
    one = render(art, 1, steps=80)
    three = render(art, 3, steps=80)
    assert three.shape[-2:] == (3 * 96, 3 * 120)
    torch.testing.assert_close(F.avg_pool2d(three.unsqueeze(0), 3)[0], one, atol=1e-4, rtol=0)


def test_shared_maps_aux_patches_and_odd_sizes(image):
    art, report = fractalize(image[:1, :61, :75], FractalizeOptions(steps=5, channel_maps="shared", aux=2,
                                                                      isometries=("identity", "flip")))
    assert art.size == (61, 75) and art.config.padded == (64, 80)
    assert art.code.weights.shape == (1, 1, 80, 4)
    assert render(art, 2).shape == (1, 122, 150)
    assert report.seconds > 0


def test_animations(fitted):
    art, _ = fitted
    frames = decode_from_noise(art, frames=6)
    assert 2 <= len(frames) <= 6 and frames[0].shape == (3, 96, 120)
    assert float((frames[0] - frames[-1]).abs().mean()) > 0.05  # the first frame is noise, not the picture
    zoom = zoom_frames(art, zoom=3, frames=5, size=64)
    assert len(zoom) == 5 and all(f.shape == (3, 51, 64) for f in zoom)
    # The first frame is the whole picture, the last one a 3x magnification of its centre.
    whole = F.interpolate(render(art, 1).clamp(0, 1).unsqueeze(0), size=(51, 64), mode="area")[0]
    torch.testing.assert_close(zoom[0], whole, atol=1e-5, rtol=0)
    assert float((zoom[-1] - whole).abs().mean()) > 0.02


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": -1}, "steps"),
        ({"lr": float("nan")}, "lr"),
        ({"range_size": 1}, "range size"),
        ({"s_max": 1.0}, "s_max"),
        ({"isometries": ("spin",)}, "isometry"),
        ({"channel_maps": "mixed"}, "channel maps"),
        ({"aux": 65}, "auxiliary"),
    ],
)
def test_bad_options_are_configuration_errors(image, kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        fractalize(image, FractalizeOptions(**kwargs))


def test_bad_images_are_configuration_errors(image):
    with pytest.raises(ConfigurationError, match="shape"):
        fractalize(image[0])
    with pytest.raises(ConfigurationError, match="finite"):
        fractalize(image * float("nan"))
    with pytest.raises(ConfigurationError, match="two range cells"):
        fractalize(image[:, :12, :])
