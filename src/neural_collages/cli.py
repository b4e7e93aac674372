"""The ``collage`` command-line tool.

Every subcommand validates its input and turns the package's errors into one line on stderr
and exit status 2; no traceback reaches the user for bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

import torch

from . import __version__
from .errors import CollageError, ConfigurationError, ImageError, OutputExistsError
from .operator import CollageOperator
from .partitions import ISOMETRY_NAMES

SAMPLE_IMAGE = "astronaut.png"


def sample_image_path() -> Path:
    """The public-domain sample image shipped with the package (NASA astronaut photo, 256×256)."""
    return Path(str(resources.files("neural_collages") / "data" / SAMPLE_IMAGE))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_demo_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="fit a fractal collage to an image and decode it at 1x and at a zoom scale",
        description=(
            "Fit a collage code to an image (the bundled sample by default) by exact exhaustive search "
            "(every range cell takes its best 2:1 domain cell under the 8 isometries), decode its fixed "
            "point at 1x and at --scale, and write the images. Prints PSNR and timings."
        ),
    )
    p.add_argument("--image", type=Path, default=None, help="input image (PNG/JPEG); default: bundled sample")
    p.add_argument("--out", type=Path, default=Path("collage-demo"), help="output folder (default: %(default)s)")
    p.add_argument("--range-size", type=_positive_int, default=4, help="range cell size in pixels (default: 4)")
    p.add_argument("--scale", type=_positive_int, default=4, help="zoom scale of the second decode (default: 4)")
    p.add_argument("--animate", action="store_true", help="also write decode.gif: the iterations from a blank start")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(handler=run_demo)


def run_demo(args) -> int:
    from .images import crop_to, load_image, pad_to_multiple, save_image, to_uint8
    from .metrics import psnr
    from .search import exhaustive_search

    if args.threads:
        torch.set_num_threads(args.threads)
    path = args.image or sample_image_path()
    image = load_image(path, mode="rgb")
    H, W = image.shape[-2:]
    rs = args.range_size
    if min(H, W) < 2 * rs:
        raise ImageError(f"{path}: a {W}x{H} image is too small for {rs}px range cells (needs {2 * rs}px)")
    if H * W > 2048 * 2048:
        raise ImageError(f"{path}: {W}x{H} is larger than the demo handles (2048x2048); crop it first")
    if args.scale * args.scale * H * W > 2**26:
        raise ConfigurationError(f"--scale {args.scale} would decode a {args.scale * W}x{args.scale * H} image; too big")
    outputs = {
        "original": args.out / "original.png",
        "collage_1x": args.out / "collage_1x.png",
        f"collage_{args.scale}x": args.out / f"collage_{args.scale}x.png",
        f"nearest_{args.scale}x": args.out / f"nearest_{args.scale}x.png",
    }
    if args.animate:
        outputs["animation"] = args.out / "decode.gif"
    if not args.force:
        existing = [str(p) for p in outputs.values() if p.exists()]
        if existing:
            raise CollageError(f"refusing to overwrite {', '.join(existing)} (use --force)")
    args.out.mkdir(parents=True, exist_ok=True)

    padded, _ = pad_to_multiple(image.unsqueeze(0), 2 * rs)
    op = CollageOperator(
        padded.shape[-2:], channels=3, range_size=rs, domain_size=2 * rs, domain_stride=rs,
        isometries=ISOMETRY_NAMES,
    )
    print(f"image {path} ({W}x{H}); {op.num_ranges} ranges x {op.num_candidates} candidates")
    t0 = time.perf_counter()
    result = exhaustive_search(op, padded, progress=True)
    t_search = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        decoded, stats = op.decode(result.code, tol=1e-4, max_steps=100, return_trajectory=args.animate)
        t_decode = time.perf_counter() - t0
        t0 = time.perf_counter()
        zoomed, zstats = op.decode(result.code, scale=args.scale, tol=1e-4, max_steps=100)
        t_zoom = time.perf_counter() - t0
    decoded = crop_to(decoded, (H, W))[0]
    zoomed = crop_to(zoomed, (args.scale * H, args.scale * W))[0]
    nearest = image.repeat_interleave(args.scale, -2).repeat_interleave(args.scale, -1)
    save_image(image, outputs["original"], force=args.force)
    save_image(decoded, outputs["collage_1x"], force=args.force)
    save_image(zoomed, outputs[f"collage_{args.scale}x"], force=args.force)
    save_image(nearest, outputs[f"nearest_{args.scale}x"], force=args.force)
    if args.animate:
        from .images import save_animation

        frames = [to_uint8(crop_to(f, (H, W))[0].clamp(0, 1)) for f in stats.trajectory]
        save_animation(frames, outputs["animation"], force=args.force)
    quality = float(psnr(image, decoded.clamp(0, 1)))
    print(f"search   {t_search:6.2f} s  (exact, {op.num_ranges * op.num_candidates / 1e6:.0f}M range-candidate pairs)")
    print(f"decode   {t_decode:6.3f} s  at 1x: {stats.steps} steps, PSNR {quality:.2f} dB")
    print(f"zoom     {t_zoom:6.3f} s  at {args.scale}x: {zstats.steps} steps")
    for name, p in outputs.items():
        print(f"wrote {p}")
    return 0


def _add_codec_parsers(sub) -> None:
    from .codecs import CODECS

    p = sub.add_parser(
        "compress",
        help="compress an image to a .clg file",
        description="Compress a PNG/JPEG image (RGB or greyscale) into a .clg file.",
    )
    p.add_argument("input", type=Path, help="image to compress (PNG, JPEG, ...)")
    p.add_argument("output", type=Path, help="output file (.clg)")
    p.add_argument("--codec", choices=sorted(CODECS), default="pifs", help="codec (default: %(default)s)")
    p.add_argument("--quality", type=_positive_int, default=None,
                   help="1 = smallest file ... 8 = best quality (pifs; default 4)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    p.set_defaults(handler=run_compress)

    p = sub.add_parser(
        "decompress",
        help="decode a .clg file to an image, at any integer scale",
        description="Decode a .clg file to PNG (or any format Pillow writes, by extension). "
        "--scale S decodes the fractal code S times larger (fractal zoom).",
    )
    p.add_argument("input", type=Path, help=".clg file")
    p.add_argument("output", type=Path, help="output image (.png recommended)")
    p.add_argument("--scale", type=_positive_int, default=1, help="integer zoom factor (default: 1)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    p.set_defaults(handler=run_decompress)

    p = sub.add_parser("info", help="print the header of a .clg file", description="Print the header of a .clg file.")
    p.add_argument("input", type=Path, help=".clg file")
    p.set_defaults(handler=run_info)


def _check_output(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; refusing to overwrite it (use --force)")
    if path.exists() and path.is_dir():
        raise CollageError(f"{path} is a directory")


def run_compress(args) -> int:
    from .codecs import compress, quality_levels
    from .container import EXTENSION, unpack
    from .images import atomic_write_bytes, load_image

    if args.threads:
        torch.set_num_threads(args.threads)
    levels = quality_levels(args.codec)
    if args.quality is not None and args.quality not in levels:
        raise ConfigurationError(f"--quality must be one of {levels[0]}..{levels[-1]} for {args.codec}")
    _check_output(args.output, args.force)
    image = load_image(args.input, mode="keep")
    t0 = time.perf_counter()
    data = compress(image, args.codec, args.quality, progress=True)
    elapsed = time.perf_counter() - t0
    atomic_write_bytes(args.output, data, force=args.force)
    H, W = image.shape[-2:]
    note = "" if args.output.suffix == EXTENSION else f" (the usual extension is {EXTENSION})"
    print(f"{args.input} -> {args.output}{note}: {len(data)} bytes, {8 * len(data) / (H * W):.4f} bpp, "
          f"{elapsed:.2f} s")
    return 0


def run_decompress(args) -> int:
    from .codecs import decompress
    from .container import read_container, pack
    from .images import save_image

    if args.threads:
        torch.set_num_threads(args.threads)
    _check_output(args.output, args.force)
    header, payload = read_container(args.input)
    t0 = time.perf_counter()
    image = decompress(pack(header, payload), scale=args.scale)
    elapsed = time.perf_counter() - t0
    save_image(image, args.output, force=args.force)
    print(f"{args.input} -> {args.output}: {image.shape[-1]}x{image.shape[-2]}, {elapsed:.2f} s")
    return 0


def run_info(args) -> int:
    from .container import describe, read_container

    header, payload = read_container(args.input)
    print(describe(header, len(payload), args.input.stat().st_size))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collage",
        description="Neural Collages: collage operators, fractal codecs and any-resolution decoding.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_codec_parsers(sub)
    _add_demo_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except CollageError as exc:
        print(f"collage: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("collage: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
