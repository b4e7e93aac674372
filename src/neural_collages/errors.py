"""The project's exception types.

Every entry point (library validation, file decoders, the command line) raises a subclass of
:class:`CollageError`, so callers can catch one type and the CLI can print one clear line.
"""


class CollageError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(CollageError, ValueError):
    """An impossible operator or codec configuration (cells that do not tile, s_max >= 1, ...)."""


class CodeError(CollageError, ValueError):
    """A collage code that does not fit the operator it is used with (shape, dtype, index range)."""


class ImageError(CollageError):
    """An image that cannot be read, has an unsupported layout, or cannot be written."""


class TransparencyError(ImageError):
    """An image with a transparent alpha channel, read without saying what to do with it."""


class OutputExistsError(CollageError):
    """Refusing to overwrite an existing output file without ``force``.

    ``path`` is the file (or folder) that exists, so a front end can phrase its own hint.
    """

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = path


class FormatError(CollageError):
    """A compressed file that is corrupt, truncated, crafted, or of an unsupported version."""


class MissingDependencyError(CollageError, ImportError):
    """An optional dependency a feature needs is not installed (the message says how to install it)."""


class BudgetError(CollageError):
    """No setting of a codec fits an image in the requested size (the message says the smallest)."""
