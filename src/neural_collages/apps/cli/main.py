"""The ``collage`` command: one parser, one subcommand module per group, one error handler.

Every subcommand validates its input and turns the package's errors into one line on stderr and
exit status 2; no traceback reaches the user for bad input. Subcommand modules import torch and
the heavy parts of the package only when they run, so ``--help`` and ``--version`` start fast.
"""

from __future__ import annotations

import argparse
import sys

from ...errors import CollageError, OutputExistsError
from . import batch, codec, corpus, demo, fractalize, ifs, train, vae
from . import app as web_app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neural-collages")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collage",
        description="Neural Collages: collage operators, fractal codecs and any-resolution decoding.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    codec.add_parsers(sub)
    batch.add_parser(sub)
    demo.add_parser(sub)
    fractalize.add_parser(sub)
    ifs.add_parser(sub)
    vae.add_parser(sub)
    web_app.add_parser(sub)
    corpus.add_parser(sub)
    train.add_parser(sub)
    return parser


def error_message(exc: CollageError) -> str:
    """The one line the CLI prints for a project error (library texts speak of parameters, this of flags)."""
    if isinstance(exc, OutputExistsError) and exc.path is not None and "--force" not in str(exc):
        return f"{exc.path} already exists; refusing to overwrite it (use --force)"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except CollageError as exc:
        print(f"collage: error: {error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("collage: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
