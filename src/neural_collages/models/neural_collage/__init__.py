"""The Neural Collage codec network: config, prior, encoder and the model that ties them together."""

from .config import RANGE, NeuralCodecConfig
from .encoder import CropEncoder
from .model import NeuralCollageCodec, dct_ac_basis
from .prior import FactorizedPrior

__all__ = ["RANGE", "NeuralCodecConfig", "CropEncoder", "NeuralCollageCodec", "FactorizedPrior", "dct_ac_basis"]
