"""Fractal art: fit a collage whose only domain is the whole image, then render it at any zoom."""

from .fit import DEFAULT_STEPS, FitReport, FractalizeOptions, fractalize, project_l1_ball
from .render import decode_from_noise, zoom_frames

__all__ = [
    "DEFAULT_STEPS",
    "FitReport",
    "FractalizeOptions",
    "decode_from_noise",
    "fractalize",
    "project_l1_ball",
    "zoom_frames",
]
