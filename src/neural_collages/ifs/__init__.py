"""IFS fractals from point clouds: the set version of the collage idea (see ``docs/ifs.md``).

``model`` (contractive affine maps), ``render`` (the chaos game, density images), ``distances``
(nearest neighbours, Chamfer), ``fit`` (fitting by the collage theorem for sets), ``encoder``
(the amortised encoder), ``io`` (clouds and ``ifs.json``) and ``gallery`` (classic fractals and
how well they are recovered).
"""

from .distances import chamfer, nearest
from .fit import FitOptions, FitResult, Normalisation, amortised_fit, coverage_probabilities, fit_ifs
from .model import IFS, apply_maps, check_maps
from .render import chaos_game, density, density_image, project

__all__ = ["IFS", "apply_maps", "check_maps", "chaos_game", "density", "density_image", "project",
           "FitOptions", "FitResult", "Normalisation", "amortised_fit", "chamfer", "coverage_probabilities",
           "fit_ifs", "nearest"]
