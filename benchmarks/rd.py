"""Rate–distortion benchmark: every codec of the registry (``benchmarks/codecs.py``) over a folder
of images, one JSON file per codec in CompressAI's results schema, then the plot and summary table
(``benchmarks/plot_rd.py``).

    python benchmarks/rd.py [--images DIR] [--codecs jpeg webp avif] [--limit N]
                            [--out benchmarks/results/kodak] [--repeats R] [--threads T]

For each codec and each quality of its sweep, every image is encoded (bpp = 8·bytes / (H·W)),
decoded, and scored against the original with PSNR-RGB (8-bit, peak 255) and MS-SSIM-RGB; encode
and decode times are wall-clock seconds (``time.perf_counter``, median over ``--repeats``). Each
entry of ``results`` is the mean over the images at one quality. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/rd.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._common import setup_paths
else:
    from ._common import setup_paths
setup_paths()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import codecs as registry  # noqa: E402
from benchmarks._common import DEFAULT_IMAGES, DEFAULT_OUT, DEFAULT_PUBLISHED, ROOT, dumps, timed  # noqa: E402
from neural_collages.errors import CollageError  # noqa: E402
from neural_collages.imaging.io import atomic_write_bytes, load_image, to_uint8  # noqa: E402
from neural_collages.imaging.metrics import ms_ssim, psnr  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
EXIT_USAGE = 2
EXIT_FAILED = 1


class UsageError(Exception):
    """Bad input (arguments, image folder, images): reported in one line, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/rd.py",
        description="Rate-distortion benchmark of image codecs (PSNR / MS-SSIM vs bits per pixel).",
    )
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                   help="folder of test images (default: ../shared/data/kodak from the repository root)")
    p.add_argument("--codecs", nargs="+", metavar="NAME",
                   help="codecs to run (default: every registered codec; see --list-codecs)")
    p.add_argument("--list-codecs", action="store_true", help="print the registered codecs and exit")
    p.add_argument("--limit", type=_positive_int, help="use only the first N images (sorted by name)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="results folder; one <codec>.json each, plus rd.png and summary.md "
                        "(default: benchmarks/results/kodak)")
    p.add_argument("--repeats", type=_positive_int, default=1,
                   help="time each encode and decode this many times and keep the median (default 1)")
    p.add_argument("--threads", type=_positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--qualities", nargs="+", metavar="Q",
                   help="override the quality sweep (only with a single codec); numbers")
    p.add_argument("--no-plot", action="store_true", help="skip the plot and summary step")
    p.add_argument("--xmax", type=float, default=1.5, help="plot x range upper bound in bpp (default 1.5)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def find_images(folder: Path, limit: int | None) -> list[Path]:
    if not folder.exists():
        raise UsageError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files[:limit] if limit else files


def load_images(paths: list[Path]) -> list[np.ndarray]:
    """Each image as a ``uint8`` array ``H x W x 3`` (greyscale replicated to RGB)."""
    images = []
    for path in paths:
        try:
            x = load_image(path, mode="rgb")
        except CollageError as exc:
            raise UsageError(str(exc)) from None
        images.append(to_uint8(x).permute(1, 2, 0).contiguous().numpy())
    return images


def _parse_qualities(values: list[str]) -> list:
    out = []
    for v in values:
        try:
            out.append(int(v))
        except ValueError:
            try:
                out.append(float(v))
            except ValueError:
                raise UsageError(f"--qualities: not a number: {v!r}") from None
    return out


def _to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)


def measure(codec, quality, image: np.ndarray, repeats: int) -> dict:
    """One image at one quality: rate, distortion and times."""
    H, W = image.shape[:2]
    data, t_enc = timed(lambda: codec.encode(image, quality), repeats)
    # A codec that reuses work across a sweep reports what a standalone encode would cost.
    reported = getattr(codec, "last_encode_seconds", None)
    if reported is not None:
        t_enc = float(reported)
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{codec.name}.encode returned {type(data).__name__}, not bytes")
    data = bytes(data)
    decoded, t_dec = timed(lambda: codec.decode(data), repeats)
    decoded = registry.check_image(np.asarray(decoded), f"{codec.name}.decode output")
    if decoded.shape != image.shape:
        raise ValueError(f"{codec.name}: decoded shape {decoded.shape} differs from the input's {image.shape}")
    ref, test = _to_chw(image), _to_chw(decoded)
    return {
        "bytes": len(data),
        "bpp": 8.0 * len(data) / (H * W),
        "psnr-rgb": float(psnr(ref, test)),
        "ms-ssim-rgb": float(ms_ssim(ref, test)),
        "encoding_time": t_enc,
        "decoding_time": t_dec,
    }


METRICS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")


def _mean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean())


def machine_info(threads: int) -> dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_available": affinity,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": threads,
        "numpy": np.__version__,
        "pillow": Image.__version__,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def run_codec(codec, qualities, names, images, repeats, progress) -> tuple[dict, list[dict]]:
    # Untimed warm-up: first-call library set-up (tables, thread pools) is not part of any point.
    codec.decode(codec.encode(images[0], qualities[0]))
    per_image = [{"image": n, "height": int(im.shape[0]), "width": int(im.shape[1]),
                  **{k: [] for k in ("bytes",) + METRICS}} for n, im in zip(names, images)]
    results = {k: [] for k in METRICS}
    for q in qualities:
        points = []
        for record, image in zip(per_image, images):
            progress.set_postfix_str(f"{codec.name} q={q} {record['image']}", refresh=False)
            point = measure(codec, q, image, repeats)
            for k, v in point.items():
                record[k].append(v)
            points.append(point)
            progress.update(1)
        for k in METRICS:
            results[k].append(_mean([p[k] for p in points]))
    return results, per_image


def write_result(out_dir: Path, codec, qualities, results, per_image, meta) -> Path:
    doc = {
        "name": codec.name,
        "description": codec.description,
        "results": results,
        "quality": list(qualities),
        "per_image": per_image,
        "meta": meta,
    }
    path = out_dir / f"{codec.name}.json"
    atomic_write_bytes(path, dumps(doc).encode("utf-8"), force=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _main(args, argv)
    except UsageError as exc:
        print(f"rd.py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rd.py: interrupted", file=sys.stderr)
        return 130
    except (CollageError, ValueError, TypeError, RuntimeError, OSError) as exc:
        print(f"rd.py: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _main(args, argv) -> int:
    from tqdm import tqdm

    if args.list_codecs:
        for name in registry.available_codecs():
            try:
                codec = registry.get_codec(name)
                print(f"{name:10s} {list(codec.qualities)}\n{'':10s} {codec.description}")
            except Exception as exc:  # e.g. a library missing for one codec
                print(f"{name:10s} unavailable: {type(exc).__name__}: {exc}")
        return 0
    names = args.codecs or registry.available_codecs()
    if len(set(names)) != len(names):
        raise UsageError(f"--codecs lists a codec twice: {' '.join(names)}")
    codec_list = []
    for name in names:
        try:
            codec_list.append(registry.get_codec(name))
        except registry.UnknownCodecError as exc:
            raise UsageError(str(exc)) from None
        except Exception as exc:
            raise UsageError(f"codec {name!r} is unavailable: {type(exc).__name__}: {exc}") from None
    if args.qualities is not None and len(codec_list) != 1:
        raise UsageError("--qualities needs exactly one codec in --codecs")
    if not (args.xmax > 0):
        raise UsageError(f"--xmax must be positive, got {args.xmax}")

    image_dir = args.images.expanduser()
    paths = find_images(image_dir, args.limit)
    out_dir = args.out.expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a folder")
    images = load_images(paths)
    out_dir.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(args.threads)
    sweeps = [list(_parse_qualities(args.qualities)) if args.qualities else list(c.qualities) for c in codec_list]
    total = sum(len(s) for s in sweeps) * len(images)
    command = " ".join(shlex.quote(a) for a in ["benchmarks/rd.py", *(sys.argv[1:] if argv is None else argv)])
    started = datetime.now(timezone.utc)
    meta_common = {
        "num_images": len(images),
        "image_dir": image_dir.resolve().name,
        "images": [p.name for p in paths],
        "repeats": args.repeats,
        "timing": "seconds per image, wall clock (time.perf_counter), median over repeats; "
                  "results[*] are means over images",
        "command": command,
        "machine": machine_info(args.threads),
    }
    written = []
    with tqdm(total=total, unit="img", disable=args.quiet, dynamic_ncols=True, file=sys.stderr) as bar:
        for codec, sweep in zip(codec_list, sweeps):
            t0 = time.perf_counter()
            results, per_image = run_codec(codec, sweep, [p.name for p in paths], images, args.repeats, bar)
            meta = {**meta_common, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "started": started.isoformat(timespec="seconds"),
                    "codec_wall_time_s": round(time.perf_counter() - t0, 3),
                    "versions": getattr(codec, "versions", dict)(), "published": False}
            written.append(write_result(out_dir, codec, sweep, results, per_image, meta))
    for path in written:
        print(f"wrote {_display(path)}")

    if not args.no_plot:
        from benchmarks import plot_rd

        published = DEFAULT_PUBLISHED if DEFAULT_PUBLISHED.exists() else None
        try:
            plot_rd.report(out_dir, published=published, xmax=args.xmax, quiet=args.quiet)
        except plot_rd.PlotError as exc:
            print(f"rd.py: plot step failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
    return 0


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
