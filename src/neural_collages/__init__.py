"""neural-collages: differentiable collage operators, fractal codecs and Neural Collages.

Where things are: ``core/`` the collage maths, ``coding/`` bits, ``imaging/`` pixels,
``codecs/`` "compress an image" (one folder per codec), ``models/`` networks and the zoo of
shipped weights, ``training/`` training loops and corpora, ``apps/`` the command line, ``assets/``
shipped files; ``errors``, ``checks`` and ``limits`` are leaf modules every subpackage may import.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from .errors import CodeError, CollageError, ConfigurationError, FormatError, ImageError, OutputExistsError

#: Public names and the modules that define them. Imported on first use (PEP 562), so that
#: ``import neural_collages.errors`` or ``collage --help`` does not pay for importing torch (~3 s).
_LAZY = {
    "CollageOperator": ".core.operator",
    "DenseCode": ".core.codes",
    "SparseCode": ".core.codes",
    "contraction_bound": ".core.codes",
    "contractive_weights": ".core.codes",
    "ISOMETRY_NAMES": ".core.partitions",
    "DecodeStats": ".core.solvers",
}

__all__ = [
    *_LAZY,
    "CollageError",
    "ConfigurationError",
    "CodeError",
    "FormatError",
    "ImageError",
    "OutputExistsError",
]

try:  # the one place the version is written is pyproject.toml
    __version__ = version("neural-collages")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
