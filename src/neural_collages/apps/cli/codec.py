"""``collage compress``, ``decompress`` and ``info``: one image ↔ one ``.clg`` file."""

from __future__ import annotations

import time
from pathlib import Path

from ...coding.container import CODEC_IDS, EXTENSION
from ...errors import ConfigurationError, ImageError, TransparencyError
from .common import check_output, positive_float, positive_int, set_threads

#: Model families of the neural codec (``models.zoo.FAMILIES``; written here so ``--help`` needs no torch).
MODEL_FAMILIES = ("photo", "aerial")


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "compress",
        help="compress an image to a .clg file",
        description="Compress a PNG/JPEG image (RGB or greyscale) into a .clg file.",
    )
    p.add_argument("input", type=Path, help="image to compress (PNG, JPEG, ...)")
    p.add_argument("output", type=Path, help="output file (.clg)")
    p.add_argument("--codec", choices=sorted(CODEC_IDS), default="pifs", help="codec (default: %(default)s)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quality", type=positive_int, default=None,
                      help="1 = smallest file ... best quality (pifs: 1-10, default 4; neural: the shipped levels)")
    size.add_argument("--bpp", type=positive_float, default=None,
                      help="instead of --quality: the best file within this many bits per pixel "
                           "(pifs: any rate, finer than its levels; neural: its shipped levels)")
    size.add_argument("--max-bytes", type=positive_int, default=None,
                      help="instead of --quality: the best file of at most this many bytes")
    p.add_argument("--alpha", choices=("composite", "drop"), default=None,
                   help="an image with transparency: blend it onto white (composite) or discard the alpha (drop); "
                        "without this option such images are refused")
    p.add_argument("--model", choices=MODEL_FAMILIES, default=None,
                   help="neural codec: the quality ladder of the models trained on photos (default) or on aerial "
                        "imagery; the other family's nearest model is tried too and the cheaper code kept")
    p.add_argument("--exact-model", action="store_true",
                   help="neural codec: use exactly the --model family, without trying the others")
    p.add_argument("--search", choices=("exhaustive", "fast"), default=None,
                   help="pifs domain search: every domain (default), or short lists from an index, linear in "
                        "the pixel count (photos of several megapixels)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
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
    p.add_argument("--scale", type=positive_int, default=1, help="integer zoom factor (default: 1)")
    p.add_argument("--max-pixels", type=positive_int, default=None,
                   help="refuse outputs with more pixels, checked before decoding (default: 2**26 = 67,108,864; "
                        "neural_collages.limits.MAX_PIXELS)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    p.set_defaults(handler=run_decompress)

    p = sub.add_parser("info", help="print the header of a .clg file", description="Print the header of a .clg file.")
    p.add_argument("input", type=Path, help=".clg file")
    p.set_defaults(handler=run_info)


def run_compress(args) -> int:
    from ...codecs import compress, quality_levels
    from ...imaging.atomic import atomic_write_bytes
    from ...imaging.io import load_image

    set_threads(args.threads)
    if args.model is not None and args.codec != "neural":
        raise ConfigurationError("--model applies to --codec neural only")
    if args.search is not None and args.codec != "pifs":
        raise ConfigurationError("--search applies to --codec pifs only")
    if args.exact_model and args.codec != "neural":
        raise ConfigurationError("--exact-model applies to --codec neural only")
    levels = quality_levels(args.codec, args.model)
    if args.quality is not None and args.quality not in levels:
        raise ConfigurationError(f"--quality must be one of {', '.join(map(str, levels))} for {args.codec}")
    check_output(args.output, args.force, inputs=(args.input,))
    try:
        image = load_image(args.input, mode="keep", alpha=args.alpha or "error")
    except TransparencyError:
        raise ImageError(f"{args.input}: the image has transparency; pass --alpha composite "
                         "(blend onto white) or --alpha drop") from None
    H, W = image.shape[-2:]
    t0 = time.perf_counter()
    setting = ""
    if args.bpp is not None or args.max_bytes is not None:
        from ...codecs import budget_bytes, compress_to_size

        budget = budget_bytes(H, W, bpp=args.bpp, max_bytes=args.max_bytes)
        sized = compress_to_size(image, args.codec, budget, model=args.model, search=args.search,
                                 exact_model=args.exact_model)
        data = sized.data
        lam = f", lambda {sized.lam:.4g}" if sized.lam is not None else ""
        setting = f" (budget {budget} bytes: quality {sized.quality}{lam})"
    else:
        data = compress(image, args.codec, args.quality, progress=True, model=args.model, search=args.search,
                        exact_model=args.exact_model)
    elapsed = time.perf_counter() - t0
    atomic_write_bytes(args.output, data, force=args.force)
    if args.codec == "neural":
        from ...coding.container import unpack

        setting += f" (model {unpack(data)[0].params['model']})"
    note = "" if args.output.suffix == EXTENSION else f" (the usual extension is {EXTENSION})"
    print(f"{args.input} -> {args.output}{note}: {len(data)} bytes, {8 * len(data) / (H * W):.4f} bpp{setting}, "
          f"{elapsed:.2f} s")
    return 0


def run_decompress(args) -> int:
    import torch

    from ...codecs import decompress
    from ...codecs.files import read_container
    from ...coding.container import pack
    from ...imaging.io import save_image

    from ...imaging.io import IMAGE_SUFFIXES

    set_threads(args.threads)
    check_output(args.output, args.force, inputs=(args.input,), suffixes=IMAGE_SUFFIXES)
    header, payload = read_container(args.input)
    t0 = time.perf_counter()
    # 8-bit output: what the PNG holds, a quarter of the float image's memory (2^26 pixels: 0.19 GiB)
    image = decompress(pack(header, payload), scale=args.scale, max_pixels=args.max_pixels, dtype=torch.uint8)
    elapsed = time.perf_counter() - t0
    save_image(image, args.output, force=args.force)
    print(f"{args.input} -> {args.output}: {image.shape[-1]}x{image.shape[-2]}, {elapsed:.2f} s")
    return 0


def run_info(args) -> int:
    from ...codecs.files import read_container
    from ...coding.container import describe

    from ... import limits
    from ...codecs.base import MAX_SCALE

    header, payload = read_container(args.input)
    print(describe(header, len(payload), args.input.stat().st_size))
    # What a decode would cost, from the header alone: output pixels per scale, and the largest
    # scale the pixel limit allows.
    pixels = header.width * header.height
    fits = [s for s in range(1, MAX_SCALE + 1) if s * s * pixels <= limits.MAX_PIXELS]
    largest = f"{fits[-1]}x ({fits[-1] ** 2 * pixels:,} pixels)" if fits else "none"
    print(f"decode:      {pixels:,} output pixels at 1x, s² times that at scale s; largest scale within the "
          f"{limits.MAX_PIXELS:,}-pixel limit: {largest}")
    return 0
