"""The fractal (PIFS) codec: exhaustive search, rate–distortion quadtree, entropy-coded ``.clg`` files."""

from .analysis import analyse, image_planes, plane_layouts
from .bitstream import decode_planes
from .codec import CODEC, PifsCodec, decode, decode_parts, encode, encode_analysed
from .config import DEFAULT_QUALITY, QUALITY_LAMBDAS, PifsConfig
from ..base import MAX_SCALE

__all__ = [
    "CODEC",
    "PifsCodec",
    "PifsConfig",
    "DEFAULT_QUALITY",
    "QUALITY_LAMBDAS",
    "MAX_SCALE",
    "analyse",
    "encode",
    "encode_analysed",
    "decode",
    "decode_parts",
    "decode_planes",
    "image_planes",
    "plane_layouts",
]
