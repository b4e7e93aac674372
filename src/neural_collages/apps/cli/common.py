"""Helpers every subcommand shares: argument types, thread settings, output checks.

Nothing here imports torch at module level: ``collage --help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import CollageError, OutputExistsError


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (torch's own choice when not given)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def check_output(path: Path, force: bool) -> None:
    """Refuse an existing output without ``--force`` (before any work), and a directory always."""
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; refusing to overwrite it (use --force)", path)
    if path.exists() and path.is_dir():
        raise CollageError(f"{path} is a directory")
