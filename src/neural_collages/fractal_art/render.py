"""Animations of a fractal-art code: the decode from noise, and a continuous zoom into the fractal.

The zoom's frames are crops of the code rendered at integer scales (each render cached), so
every frame shows detail the code itself produces at that magnification: a frame at zoom ``z``
is cut from the render at scale ``ceil(z)`` and only ever shrunk to the frame size, never enlarged.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..checks import is_int
from ..codecs.fractal_art import ArtCode, render
from ..errors import ConfigurationError


def decode_from_noise(art: ArtCode, scale: int = 1, frames: int = 16, seed: int = 0) -> list[torch.Tensor]:
    """The iterates of a decode at ``scale`` from uniform noise: ``frames`` images ``(C, sH, sW)`` in [0, 1]."""
    if not is_int(frames) or not 2 <= frames <= 256:
        raise ConfigurationError(f"frames must be an integer in [2, 256], got {frames!r}")
    PH, PW = art.config.padded
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, art.channels, scale * PH, scale * PW, generator=g)
    _, trajectory = render(art, scale, init=noise, steps=frames - 1, return_trajectory=True)
    return [f.clamp(0, 1) for f in trajectory]


def zoom_frames(
    art: ArtCode,
    zoom: int = 4,
    frames: int = 24,
    size: int = 256,
    focus: tuple[float, float] = (0.5, 0.5),
    progress: Callable[[int], object] | None = None,
) -> list[torch.Tensor]:
    """A continuous zoom from 1× to ``zoom``× towards ``focus`` (relative (y, x)), as ``frames`` images.

    Frames are ``(C, h, w)`` with the longer side ``size`` (at most the image's), geometric in zoom.
    ``progress`` is called with 1 after each integer-scale render.
    """
    if not is_int(zoom) or not 1 <= zoom <= 16:
        raise ConfigurationError(f"zoom must be an integer in [1, 16], got {zoom!r}")
    if not is_int(frames) or not 2 <= frames <= 256:
        raise ConfigurationError(f"frames must be an integer in [2, 256], got {frames!r}")
    if not is_int(size) or not 16 <= size <= 4096:
        raise ConfigurationError(f"size must be an integer in [16, 4096], got {size!r}")
    fy, fx = focus
    if not (0 <= fy <= 1 and 0 <= fx <= 1):
        raise ConfigurationError(f"focus must lie in [0, 1]², got {focus!r}")
    H, W = art.size
    k = min(1.0, size / max(H, W))
    out_h, out_w = max(1, round(H * k)), max(1, round(W * k))
    renders: dict[int, torch.Tensor] = {}
    result = []
    for i in range(frames):
        z = zoom ** (i / (frames - 1))
        s = min(zoom, math.ceil(z - 1e-9))
        if s not in renders:
            renders[s] = render(art, s).clamp(0, 1)
            if progress is not None:
                progress(1)
        image = renders[s]
        # The window of the 1x image seen at zoom z, in the scale-s render's pixels.
        wh, ww = s * H / z, s * W / z
        y0 = min(max(fy * s * H - wh / 2, 0.0), s * H - wh)
        x0 = min(max(fx * s * W - ww / 2, 0.0), s * W - ww)
        top, left = int(round(y0)), int(round(x0))
        crop = image[:, top : top + max(1, int(round(wh))), left : left + max(1, int(round(ww)))]
        result.append(F.interpolate(crop.unsqueeze(0), size=(out_h, out_w), mode="area")[0])
    return result
