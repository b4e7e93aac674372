"""The Neural Collage codec: a CNN predicts every crop's collage code; learned integer entropy tables."""

from ...models.zoo import DEFAULT_FAMILY as DEFAULT_MODEL
from ...models.zoo import FAMILIES as MODELS
from ...models.zoo import available_qualities, model_name
from .codec import (
    CODEC,
    DEFAULT_QUALITY,
    DecodedCode,
    NeuralCodec,
    analyse,
    config_from_params,
    decode,
    decode_code,
    decode_parts,
    encode,
    estimate_bits,
    reconstruct,
)
from .models import LoadedModel, load_named_model

__all__ = [
    "CODEC",
    "DEFAULT_MODEL",
    "DEFAULT_QUALITY",
    "MODELS",
    "DecodedCode",
    "LoadedModel",
    "NeuralCodec",
    "analyse",
    "available_qualities",
    "config_from_params",
    "decode",
    "decode_code",
    "decode_parts",
    "encode",
    "estimate_bits",
    "load_named_model",
    "model_name",
    "reconstruct",
]
