"""Neural networks built on the collage operator (``neural_collage/``), model files and the zoo.

``zoo`` and ``model_files`` are imported directly; the network classes are re-exported here on
first use, so that reading the zoo does not import torch.
"""

from importlib import import_module

_LAZY = {name: ".neural_collage" for name in ("NeuralCollageCodec", "NeuralCodecConfig", "dct_ac_basis")}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
