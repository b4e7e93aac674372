"""Argument checks shared by every subpackage (a leaf module, like :mod:`errors`).

Each raises :class:`~neural_collages.errors.ConfigurationError` naming the *parameter*; the
command line maps parameters to its flags.
"""

from __future__ import annotations

import numbers

from .errors import ConfigurationError


def is_int(value: object) -> bool:
    """An integer that is not a bool (Python ints and numpy integers)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def pair(value, name: str) -> tuple[int, int]:
    """Normalise an int or a 2-sequence of ints to a pair of positive ints."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be an int or a pair of ints, got {value!r}")
    if is_int(value):
        result = (int(value), int(value))
    else:
        try:
            result = tuple(value)
        except TypeError:
            raise ConfigurationError(f"{name} must be an int or a pair of ints, got {value!r}") from None
        if len(result) != 2:
            raise ConfigurationError(f"{name} must be an int or a pair of ints, got {value!r}")
    if not all(is_int(v) for v in result):
        raise ConfigurationError(f"{name} must contain ints, got {value!r}")
    result = (int(result[0]), int(result[1]))
    if min(result) < 1:
        raise ConfigurationError(f"{name} must be positive, got {value!r}")
    return result  # type: ignore[return-value]


def pair_list(value, name: str) -> list[tuple[int, int]]:
    """Sizes as a list of pairs: an int or a tuple is one size, a list holds several sizes."""
    if isinstance(value, list):
        return [pair(v, name) for v in value]
    return [pair(value, name)]


def positive_int(value, name: str) -> int:
    """``value`` if it is an int >= 1 (not a bool)."""
    if not is_int(value) or value < 1:
        raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
