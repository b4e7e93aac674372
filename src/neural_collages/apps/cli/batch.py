"""``collage batch``: folders of images, and large rasters as tiles, on a Dask cluster or in this process.

Exit status: 0 when every file succeeded (or was already done), 1 when any failed (listed, and
in the manifest), 2 for a usage error.
"""

from __future__ import annotations

from pathlib import Path

from ...coding.container import CODEC_IDS
from ...errors import ConfigurationError, MissingDependencyError
from .codec import MODEL_FAMILIES
from .common import check_output, positive_int

#: Failed files listed on the terminal (all of them are in the manifest).
SHOWN_FAILURES = 10


def _engine_flags(p) -> None:
    g = p.add_argument_group("where the work runs")
    g.add_argument("--workers", type=positive_int, default=None,
                   help="worker processes of the local Dask cluster (default: one per CPU core)")
    g.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="use the running Dask cluster at this scheduler address (tcp://host:8786) instead")
    g.add_argument("--serial", action="store_true", help="no Dask: run every job in this process, one after another")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads per job (default: 1 when compressing, so that files do not depend on the "
                        "engine; torch's choice when decoding in this process)")


def _codec_flags(p) -> None:
    p.add_argument("--codec", choices=sorted(c for c in CODEC_IDS if c != "fractal-art"), default="pifs",
                   help="codec (default: %(default)s)")
    p.add_argument("--quality", type=positive_int, default=None, help="quality level, as for `collage compress`")
    p.add_argument("--model", choices=MODEL_FAMILIES, default=None, help="neural codec: photo (default) or aerial")
    p.add_argument("--alpha", choices=("composite", "drop"), default=None,
                   help="images with transparency: blend onto white or discard the alpha (default: such images fail)")
    p.add_argument("--search", choices=("exhaustive", "fast"), default=None,
                   help="pifs domain search, as for `collage compress` (default: exhaustive)")


def _decode_flags(p) -> None:
    p.add_argument("--scale", type=positive_int, default=1, help="integer zoom factor (default: 1)")
    p.add_argument("--max-pixels", type=positive_int, default=None, help="refuse larger outputs (default: 2**26)")


def _suffix_flag(p) -> None:
    p.add_argument("--suffixes", default=".png,.jpg,.jpeg,.webp,.bmp,.tif,.tiff",
                   help="comma-separated input suffixes (default: %(default)s)")


def _format_flag(p) -> None:
    p.add_argument("--format", default="png", choices=("png", "webp", "bmp", "tif"),
                   help="output image format, lossless (default: %(default)s)")


def _tile_flags(p) -> None:
    p.add_argument("--tile", type=positive_int, default=512, help="tile side in px, a multiple of 32 (default: 512)")
    p.add_argument("--max-pixels", type=positive_int, default=None,
                   help="largest input image accepted (default: 2**26 = 67,108,864)")


_REPLACE_UNLISTED = "replace outputs that exist but are not in the manifest"


def _command(bsub, name, handler, summary, description, positionals, force_help, *flag_groups) -> None:
    """One subcommand: its positional paths, its own flags, then --force and the engine flags."""
    p = bsub.add_parser(name, help=summary, description=description)
    for arg, text in positionals:
        p.add_argument(arg, type=Path, help=text)
    for add_flags in flag_groups:
        add_flags(p)
    p.add_argument("--force", action="store_true", help=force_help)
    _engine_flags(p)
    p.set_defaults(handler=handler)


def add_parser(sub) -> None:
    batch = sub.add_parser("batch", help="compress or decompress folders, tile and stitch large images (Dask)",
                           description="Collections: every image under a folder, or a large image as tiles, "
                           "processed by a local Dask cluster, an existing one (--scheduler) or this process "
                           "(--serial). Reruns skip what the manifest shows done. Exit status 1 if any file failed.")
    bsub = batch.add_subparsers(dest="batch_command", metavar="COMMAND", required=True)
    _command(bsub, "compress", run_batch_compress, "every image under SRC becomes a .clg file under DST",
             "Compress every image under SRC (recursively) into DST, keeping relative paths; per-file results go "
             "to DST/manifest.jsonl.",
             [("src", "folder of images"), ("dst", "output folder (created)")], _REPLACE_UNLISTED,
             _codec_flags, _suffix_flag)
    _command(bsub, "decompress", run_batch_decompress, "every .clg file under SRC becomes an image under DST",
             "Decode every .clg file under SRC into DST, keeping relative paths.",
             [("src", "folder of .clg files"), ("dst", "output folder (created)")], _REPLACE_UNLISTED,
             _decode_flags, _format_flag)
    _command(bsub, "tile", run_batch_tile, "cut a large image into compressed tiles (and mosaic.json)",
             "Cut IMAGE into --tile px tiles, compress them in parallel into DST, and write DST/mosaic.json for "
             "`collage batch mosaic`.",
             [("image", "large image (an orthophoto, a 20 MP photo)"), ("dst", "output folder (created)")],
             "replace tile files that exist but are not in the manifest", _tile_flags, _codec_flags)
    _command(bsub, "mosaic", run_batch_mosaic, "decode the tiles of a folder and stitch them into one image",
             "Decode every tile listed in FOLDER/mosaic.json at --scale and stitch them.",
             [("folder", "folder written by `collage batch tile`"), ("output", "output image (.png recommended)")],
             "overwrite OUTPUT if it exists", _decode_flags)


def _engine(args):
    from ...batch import make_engine

    if args.serial and args.workers:
        raise ConfigurationError("--serial runs in this process; it takes no --workers")
    if args.scheduler and args.workers:
        raise ConfigurationError("--workers sizes a local cluster; it does not apply with --scheduler")
    if args.serial:
        return make_engine(serial=True)
    try:
        return make_engine(args.workers, args.scheduler)
    except MissingDependencyError:
        raise MissingDependencyError("collage batch runs on Dask: pip install 'neural-collages[distributed]', "
                                     "or pass --serial to run in this process") from None


def _settings(args):
    from ...batch.tasks import EncodeSettings
    from ...codecs import quality_levels

    if args.model is not None and args.codec != "neural":
        raise ConfigurationError("--model applies to --codec neural only")
    if args.search is not None and args.codec != "pifs":
        raise ConfigurationError("--search applies to --codec pifs only")
    levels = quality_levels(args.codec, args.model)
    if args.quality is not None and args.quality not in levels:
        raise ConfigurationError(f"--quality must be one of {', '.join(map(str, levels))} for {args.codec}")
    return EncodeSettings(args.codec, args.quality, args.model, args.alpha, args.threads or 1, args.search)


def _report(summary, verb: str, engine) -> int:
    print(f"batch: {summary.done} {verb}, {summary.skipped} already done, {summary.failed} failed, of "
          f"{summary.total}, in {summary.seconds:.1f} s on {engine.description}; manifest: {summary.manifest}")
    for path, message in summary.failures[:SHOWN_FAILURES]:
        print(f"  failed: {path}: {message}")
    if summary.failed > SHOWN_FAILURES:
        print(f"  ... and {summary.failed - SHOWN_FAILURES} more (see the manifest)")
    return 0 if summary.ok else 1


def run_batch_compress(args) -> int:
    from ...batch import compress_folder

    suffixes = tuple(s if s.startswith(".") else f".{s}" for s in (x.strip() for x in args.suffixes.split(",")) if s)
    if not suffixes:
        raise ConfigurationError("--suffixes names no suffix")
    settings = _settings(args)
    with _engine(args) as engine:
        summary = compress_folder(args.src, args.dst, settings, engine, suffixes=suffixes, force=args.force)
    return _report(summary, "compressed", engine)


def run_batch_decompress(args) -> int:
    from ...batch import decompress_folder

    threads = args.threads if args.threads else (None if args.serial else 1)
    with _engine(args) as engine:
        summary = decompress_folder(args.src, args.dst, args.scale, f".{args.format}", engine, force=args.force,
                                    max_pixels=args.max_pixels, threads=threads)
    return _report(summary, "decoded", engine)


def run_batch_tile(args) -> int:
    from ... import limits
    from ...batch import tile_image

    settings = _settings(args)
    if args.max_pixels:
        limits.MAX_PIXELS = args.max_pixels
    with _engine(args) as engine:
        summary = tile_image(args.image, args.dst, args.tile, settings, engine, force=args.force)
    code = _report(summary, "tiles compressed", engine)
    if summary.ok:
        print(f"layout: {args.dst / 'mosaic.json'} (stitch with `collage batch mosaic {args.dst} OUT.png`)")
    return code


def run_batch_mosaic(args) -> int:
    from ...batch import mosaic_image
    from ...imaging.io import IMAGE_SUFFIXES, save_image

    check_output(args.output, args.force, suffixes=IMAGE_SUFFIXES)
    threads = args.threads if args.threads else (None if args.serial else 1)
    with _engine(args) as engine:
        canvas = mosaic_image(args.folder, args.scale, engine, max_pixels=args.max_pixels, threads=threads)
    save_image(canvas, args.output, force=args.force)
    print(f"{args.folder} -> {args.output}: {canvas.shape[1]}x{canvas.shape[0]}")
    return 0
