"""neural-collages: differentiable collage operators, fractal codecs and Neural Collages."""

from .codes import DenseCode, SparseCode, contraction_bound, contractive_weights
from .errors import CodeError, CollageError, ConfigurationError, FormatError, ImageError, OutputExistsError
from .operator import CollageOperator
from .partitions import ISOMETRY_NAMES
from .solvers import DecodeStats

__all__ = [
    "CollageOperator",
    "DenseCode",
    "SparseCode",
    "DecodeStats",
    "contraction_bound",
    "contractive_weights",
    "ISOMETRY_NAMES",
    "CollageError",
    "ConfigurationError",
    "CodeError",
    "FormatError",
    "ImageError",
    "OutputExistsError",
]

__version__ = "0.1.0"
