"""The collage maths: codes, partitions, pooling, the operator and its step, solvers, quadtrees, search.

No file I/O, entropy coding or progress bars here: these modules import nothing of the project
but the leaf modules ``errors`` and ``checks``.
"""

from .codes import Code, DenseCode, SparseCode, contraction_bound, contractive_weights
from .operator import CollageOperator
from .partitions import ISOMETRY_NAMES
from .solvers import DecodeStats

__all__ = [
    "Code",
    "CollageOperator",
    "DenseCode",
    "SparseCode",
    "DecodeStats",
    "ISOMETRY_NAMES",
    "contraction_bound",
    "contractive_weights",
]
