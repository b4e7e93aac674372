"""Helpers every subcommand shares: argument types, thread settings, output checks.

Nothing here imports torch at module level: ``collage --help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ...errors import CollageError, ConfigurationError, OutputExistsError


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (torch's own choice when not given)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def check_output(path: Path, force: bool, inputs: tuple[Path, ...] = (), suffixes=None) -> None:
    """Check an output path before any work is done.

    Refuses: an input file as the output, whatever the flags (``--force`` must never replace the
    image being compressed); a directory; an existing file without ``--force``; a suffix outside
    ``suffixes`` (when given), so a bad name fails in a millisecond, not after a long decode.
    """
    for source in inputs:
        if source is not None and _same_file(path, source):
            raise ConfigurationError(f"{path} is also the input; refusing to write over it")
    if path.is_dir():
        raise CollageError(f"{path} is a directory")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ConfigurationError(f"{path}: unknown output suffix {path.suffix!r}; use one of {', '.join(sorted(suffixes))}")
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; refusing to overwrite it (use --force)", path)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return Path(os.path.abspath(a)) == Path(os.path.abspath(b))
