"""Files shipped with the package: the sample image and the trained model weights."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The bundled sample (NASA astronaut portrait, public domain; see README.md here).
SAMPLE_IMAGE = "astronaut.png"


def asset_path(*parts: str) -> Path:
    """Path of a shipped file (the package is installed as plain files, never zipped)."""
    return Path(str(resources.files(__name__).joinpath(*parts)))


def sample_image_path() -> Path:
    """The bundled sample image."""
    return asset_path(SAMPLE_IMAGE)


def model_dir() -> Path:
    """The folder of shipped model weights (``<family>-q<quality>.safetensors``)."""
    return asset_path("models")
