"""The model zoo: names of shipped models and the files that hold them.

A shipped model is named ``<family>-q<quality>`` (``photo-q2``, ``aerial-q1``) and lives in
``assets/models/<name>.safetensors``; the quality levels of a family are the files present.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..assets import model_dir
from ..errors import ConfigurationError, FormatError

#: Model families of the Neural Collage codec.
FAMILIES = ("photo", "aerial")
DEFAULT_FAMILY = "photo"
MODEL_NAME = re.compile(r"^(photo|aerial)-q([1-9])$")


def available_qualities(family: str = DEFAULT_FAMILY) -> tuple[int, ...]:
    """Quality levels with a shipped model file (1 = smallest files)."""
    if family not in FAMILIES:
        raise ConfigurationError(f"unknown model {family!r}; choose from {', '.join(FAMILIES)}")
    found = []
    for path in model_dir().glob(f"{family}-q*.safetensors"):
        m = MODEL_NAME.match(path.stem)
        if m:
            found.append(int(m.group(2)))
    return tuple(sorted(found))


def model_name(family: str, quality: int) -> str:
    """The shipped model of ``family`` at ``quality`` (a configuration error if there is none)."""
    qualities = available_qualities(family)
    if quality not in qualities:
        raise ConfigurationError(f"quality must be one of {qualities} for the {family} model, got {quality!r}")
    return f"{family}-q{quality}"


def model_path(name: str) -> Path:
    """The file of shipped model ``name`` (a name read from a file is hostile: FormatError if malformed)."""
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise FormatError(f"unknown neural model name {name!r}")
    path = model_dir() / f"{name}.safetensors"
    if not path.is_file():
        raise ConfigurationError(f"model {name!r} is not shipped with this build ({path} missing)")
    return path
