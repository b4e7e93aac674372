"""Neural network models built on the collage operator."""

from .collage_codec import NeuralCollageCodec, NeuralCodecConfig, dct_ac_basis

__all__ = ["NeuralCollageCodec", "NeuralCodecConfig", "dct_ac_basis"]
