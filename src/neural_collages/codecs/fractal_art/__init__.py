"""The ``fractal-art`` codec: whole-image collage codes (made by ``neural_collages.fractal_art``) on disk."""

from .codec import CODEC, ArtCode, FractalArtCodec, decode_art, encode_art, read_art, render
from .config import ArtConfig

__all__ = ["CODEC", "ArtCode", "ArtConfig", "FractalArtCodec", "decode_art", "encode_art", "read_art", "render"]
