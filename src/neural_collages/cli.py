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
        help="compress an image with the fractal and the Neural Collage codecs, decode at 1x and zoomed, compare with JPEG",
        description=(
            "Compress an image (the bundled sample by default) with the fractal PIFS codec (exact exhaustive "
            "search, rate-distortion quadtree, entropy coding) and with the Neural Collage codec (shipped photo "
            "model, the quality closest in size), decode the files at 1x and at --scale (fractal zoom), and "
            "compare with Pillow JPEG at the fractal file's size. Writes the files to --out."
        ),
    )
    p.add_argument("--image", type=Path, default=None, help="input image (PNG/JPEG); default: bundled sample")
    p.add_argument("--out", type=Path, default=Path("collage-demo"), help="output folder (default: %(default)s)")
    p.add_argument("--quality", type=_positive_int, default=None, help="codec quality 1-8 (default: 4)")
    p.add_argument("--scale", type=_positive_int, default=4, help="zoom scale of the second decode (default: 4)")
    p.add_argument("--animate", action="store_true", help="also write decode.gif: the decoding iterations")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(handler=run_demo)


def _jpeg_at_most(image_uint8, max_bytes: int) -> tuple[bytes, int] | None:
    """The best-quality Pillow JPEG (optimize=True) no larger than ``max_bytes``, by bisection."""
    import io

    from PIL import Image

    def encode(q: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image_uint8).save(buffer, format="JPEG", quality=q, optimize=True)
        return buffer.getvalue()

    lo, hi, best = 1, 95, None
    while lo <= hi:
        mid = (lo + hi) // 2
        data = encode(mid)
        if len(data) <= max_bytes:
            best, lo = (data, mid), mid + 1
        else:
            hi = mid - 1
    return best


def run_demo(args) -> int:
    import io

    import numpy as np
    from PIL import Image

    from .codecs import compress, decompress, quality_levels
    from .images import atomic_write_bytes, load_image, save_image, to_uint8
    from .metrics import psnr

    if args.threads:
        torch.set_num_threads(args.threads)
    levels = quality_levels("pifs")
    if args.quality is not None and args.quality not in levels:
        raise ConfigurationError(f"--quality must be one of {levels[0]}..{levels[-1]}")
    path = args.image or sample_image_path()
    image = load_image(path, mode="rgb")
    H, W = image.shape[-2:]
    if H * W > 4096 * 4096:
        raise ImageError(f"{path}: {W}x{H} is larger than the demo handles (16 megapixels); crop it first")
    if args.scale * args.scale * H * W > 2**26:
        raise ConfigurationError(f"--scale {args.scale} would decode a {args.scale * W}x{args.scale * H} image; too big")
    s = args.scale
    outputs = {
        "file": args.out / "image.clg",
        "original": args.out / "original.png",
        "decoded": args.out / "decoded_1x.png",
        "zoomed": args.out / f"decoded_{s}x.png",
        "nearest": args.out / f"nearest_{s}x.png",
        "jpeg": args.out / "jpeg_same_size.jpg",
        "neural_file": args.out / "image_neural.clg",
        "neural_decoded": args.out / "decoded_neural_1x.png",
        "neural_zoomed": args.out / f"decoded_neural_{s}x.png",
    }
    if args.animate:
        outputs["animation"] = args.out / "decode.gif"
    if not args.force:
        existing = [str(p) for p in outputs.values() if p.exists()]
        if existing:
            raise OutputExistsError(f"refusing to overwrite {', '.join(existing)} (use --force)")
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    data = compress(image, "pifs", args.quality, progress=True)
    t_encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.animate:
        decoded, frames = decompress(data, return_trajectory=True)
    else:
        decoded = decompress(data)
    t_decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    zoomed = decompress(data, scale=s)
    t_zoom = time.perf_counter() - t0
    nearest = image.repeat_interleave(s, -2).repeat_interleave(s, -1)

    atomic_write_bytes(outputs["file"], data, force=args.force)
    save_image(image, outputs["original"], force=args.force)
    save_image(decoded, outputs["decoded"], force=args.force)
    save_image(zoomed, outputs["zoomed"], force=args.force)
    save_image(nearest, outputs["nearest"], force=args.force)
    if args.animate:
        from .images import save_animation

        save_animation([to_uint8(f) for f in frames], outputs["animation"], force=args.force)
    bpp = 8 * len(data) / (H * W)
    ours = float(psnr(image, decoded))
    print(f"image    {path} ({W}x{H})")
    print(f"fractal  {len(data):7d} bytes  {bpp:.3f} bpp  PSNR {ours:.2f} dB  "
          f"(encode {t_encode:.2f} s, decode {t_decode:.3f} s, {s}x zoom {t_zoom:.2f} s)")
    # The Neural Collage codec with the shipped photo model at the quality closest in size.
    t0 = time.perf_counter()
    candidates = [(q, compress(image, "neural", q)) for q in quality_levels("neural", "photo")]
    t_neural = (time.perf_counter() - t0) / len(candidates)
    q_neural, neural_data = min(candidates, key=lambda c: abs(len(c[1]) - len(data)))
    neural_decoded = decompress(neural_data)
    neural_zoomed = decompress(neural_data, scale=s)
    atomic_write_bytes(outputs["neural_file"], neural_data, force=args.force)
    save_image(neural_decoded, outputs["neural_decoded"], force=args.force)
    save_image(neural_zoomed, outputs["neural_zoomed"], force=args.force)
    print(f"neural   {len(neural_data):7d} bytes  {8 * len(neural_data) / (H * W):.3f} bpp  "
          f"PSNR {float(psnr(image, neural_decoded)):.2f} dB  (quality {q_neural}, encode {t_neural:.2f} s)")
    jpeg = _jpeg_at_most(to_uint8(image).permute(1, 2, 0).numpy(), len(data))
    if jpeg is None:
        del outputs["jpeg"]
        print("jpeg     cannot get this small at any quality")
    else:
        jpeg_bytes, q = jpeg
        with Image.open(io.BytesIO(jpeg_bytes)) as im:
            jpeg_image = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255
        atomic_write_bytes(outputs["jpeg"], jpeg_bytes, force=args.force)
        print(f"jpeg     {len(jpeg_bytes):7d} bytes  {8 * len(jpeg_bytes) / (H * W):.3f} bpp  "
              f"PSNR {float(psnr(image, jpeg_image)):.2f} dB  (Pillow quality {q}, optimize=True)")
    for p in outputs.values():
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
                   help="1 = smallest file ... best quality (pifs: 1-8, default 4; neural: the shipped levels)")
    p.add_argument("--alpha", choices=("composite", "drop"), default=None,
                   help="an image with transparency: blend it onto white (composite) or discard the alpha (drop); "
                        "without this option such images are refused")
    p.add_argument("--model", choices=("photo", "aerial"), default=None,
                   help="neural codec: model trained on photos (default) or on aerial imagery")
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
    from .container import EXTENSION
    from .images import atomic_write_bytes, load_image

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model is not None and args.codec != "neural":
        raise ConfigurationError("--model applies to --codec neural only")
    levels = quality_levels(args.codec, args.model)
    if args.quality is not None and args.quality not in levels:
        raise ConfigurationError(f"--quality must be one of {', '.join(map(str, levels))} for {args.codec}")
    _check_output(args.output, args.force)
    try:
        image = load_image(args.input, mode="keep", alpha=args.alpha or "error")
    except ImageError as exc:
        if "alpha" in str(exc) and args.alpha is None:
            raise ImageError(f"{args.input}: the image has transparency; pass --alpha composite "
                             "(blend onto white) or --alpha drop") from None
        raise
    t0 = time.perf_counter()
    data = compress(image, args.codec, args.quality, progress=True, model=args.model)
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


def _add_training_parsers(sub) -> None:
    from . import data

    p = sub.add_parser(
        "corpus",
        help="build a training corpus from installed packages",
        description="Build a training corpus (PNG files + manifest.json) from the photos and aerial images "
        "that Debian and PyPI packages install (see docs/training.md). Nothing is downloaded.",
    )
    data.configure_parser(p)
    p.set_defaults(handler=data.run)

    p = sub.add_parser(
        "train",
        help="train a Neural Collage codec model",
        description="Train a Neural Collage codec model on a corpus built by `collage corpus`, for one "
        "rate-distortion trade-off (--lam). Writes OUT/checkpoint.safetensors, OUT/log.jsonl and, at the end, "
        "OUT/model.safetensors (the file the codec loads). Runs under torchrun for data-parallel training.",
    )
    p.add_argument("corpus", type=Path, help="corpus folder (from `collage corpus`)")
    p.add_argument("out", type=Path, help="output folder (checkpoint, log, model)")
    p.add_argument("--lam", type=float, default=0.004, help="rate-distortion trade-off: bpp + LAM * MSE (8-bit)")
    p.add_argument("--steps", type=_positive_int, default=6000, help="training steps (default: %(default)s)")
    p.add_argument("--batch", type=_positive_int, default=16, help="64x64 patches per step and process")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget: the schedule ends at --steps or after this many minutes, whichever is first")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--crop", type=_positive_int, default=32, help="crop size of the codec (default: %(default)s)")
    p.add_argument("--mean-step", type=float, default=2.0, help="quantisation step of range means (8-bit units)")
    p.add_argument("--no-context", action="store_true",
                   help="factorized coefficient tables without the row-above context (smaller model, ~10%% more bits)")
    p.add_argument("--no-mean-context", action="store_true", help="mean residual tables without context")
    p.add_argument("--init", type=Path, default=None,
                   help="start from the weights of this checkpoint (fine-tuning to another --lam); tensors whose "
                        "shapes differ (e.g. context tables) start fresh")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads per process")
    p.add_argument("--force", action="store_true", help="train into an existing OUT (without --resume)")
    p.set_defaults(handler=run_train)


def run_train(args) -> int:
    from .models import NeuralCodecConfig
    from .training import TrainOptions, export_model, train

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.lam <= 0 or args.lr <= 0 or (args.minutes is not None and args.minutes <= 0):
        raise ConfigurationError("--lam, --lr and --minutes must be positive")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigurationError("--device cuda: no GPU is available")
    ckpt = args.out / "checkpoint.safetensors"
    if ckpt.exists() and not (args.resume or args.force):
        raise OutputExistsError(f"{ckpt} exists: pass --resume to continue it or --force to start over")
    if args.force and not args.resume:
        for name in ("checkpoint.safetensors", "log.jsonl"):
            (args.out / name).unlink(missing_ok=True)
    config = NeuralCodecConfig(crop=args.crop, mean_step=args.mean_step, lam=args.lam, context=not args.no_context,
                               mean_context=not args.no_mean_context)
    options = TrainOptions(corpus=args.corpus, out=args.out, steps=args.steps, batch=args.batch, lr=args.lr,
                           seed=args.seed, resume=args.resume, device=args.device,
                           max_seconds=None if args.minutes is None else 60.0 * args.minutes)
    init = None
    if args.init is not None:
        if args.resume:
            raise ConfigurationError("--init and --resume exclude each other")
        from .training import load_checkpoint

        init = load_checkpoint(args.init)[0]
    summary = train(options, config, init=init)
    if summary.get("rank", 0) == 0:
        from .training import load_checkpoint

        model, _, step, _ = load_checkpoint(ckpt)
        export_model(model, args.out / "model.safetensors", {"lam": args.lam, "steps": step, "batch": args.batch})
        print(f"trained {step} steps in {summary['seconds']:.0f} s: {summary.get('bpp', 0):.3f} bpp (noisy estimate), "
              f"{summary.get('psnr', 0):.2f} dB on training crops; wrote {args.out / 'model.safetensors'}")
    import torch.distributed as dist

    if dist.is_initialized():  # under torchrun: leave together, then tear gloo/nccl down
        dist.barrier()
        dist.destroy_process_group()
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
    _add_training_parsers(sub)
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
