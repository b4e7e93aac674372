"""PIFS fast domain search against the exhaustive one, in one run: Kodak rate–distortion and speed,
then encode time against pixel count on a large real photo.

1. **Kodak** (the first ``--limit`` images): the search (``analyse``) both ways, timed (median of
   ``--repeats``); then every quality 1–8 from each search, giving bpp and RGB PSNR of the 1×
   decode. BD-rate of fast against exhaustive on the mean curves (CompressAI-style averaging over
   images) and the median of per-image BD-rates; the search speed-up and the full-encode speed-up
   at quality 4 (search, rate–distortion decisions, deblocking choice and entropy coding).
2. **Time against pixels**: a large photo from the registry packages (``--large``, default the
   6028×3391 Kleiber wallpaper of ``lomiri-wallpapers-20.04``) shrunk with Lanczos to each of
   ``--megapixels`` (never enlarged), each size encoded at quality 4 with the fast search in a fresh
   process (wall time and peak resident memory); the exhaustive search at the sizes up to
   ``--exhaustive-max`` megapixels for reference (once; the fast encodes ``--scaling-repeats``
   times, the median kept). The slope of log time against log pixels is a
   least-squares fit over the fast sizes.

Writes ``results/pifs_fast.json`` and ``results/pifs_fast.png``.

    python benchmarks/pifs_fast.py [--limit 8] [--megapixels 0.4,1,2,4,8,12] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks._common import dumps, timed  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"
LARGE = Path("/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg")
QUALITIES = range(1, 9)
TIMED_QUALITY = 4


def kodak_image(path: Path, repeats: int) -> dict:
    import torch

    from neural_collages.codecs import decompress
    from neural_collages.codecs.pifs import PifsConfig, analyse, encode_analysed
    from neural_collages.imaging.io import load_image
    from neural_collages.imaging.metrics import psnr

    image = load_image(path)
    pixels = image.shape[1] * image.shape[2]
    row = {"image": path.name}
    for search in ("exhaustive", "fast"):
        analyses, seconds = timed(lambda: analyse(image, PifsConfig(), search=search), repeats)
        points = []
        for q in QUALITIES:
            t0 = time.perf_counter()
            data = encode_analysed(image, analyses, PifsConfig(quality=q))
            coding = time.perf_counter() - t0
            with torch.no_grad():
                points.append({"quality": q, "bpp": 8 * len(data) / pixels,
                               "psnr": float(psnr(decompress(data), image)), "coding_s": coding})
        row[search] = {"search_s": seconds, "points": points}
    return row


def _bd(anchor: list[dict], test: list[dict]) -> float:
    """BD-rate in percent of ``test`` against ``anchor``."""
    from neural_collages.imaging.metrics import bd_rate

    xa, ya = np.array([p["bpp"] for p in anchor]), np.array([p["psnr"] for p in anchor])
    xt, yt = np.array([p["bpp"] for p in test]), np.array([p["psnr"] for p in test])
    return float(bd_rate(xa, ya, xt, yt))


def _mean_curve(rows: list[dict], search: str) -> list[dict]:
    return [{"quality": q, "bpp": float(np.mean([r[search]["points"][i]["bpp"] for r in rows])),
             "psnr": float(np.mean([r[search]["points"][i]["psnr"] for r in rows]))}
            for i, q in enumerate(QUALITIES)]


def encode_large(path: str, megapixels: float, search: str, threads: int) -> dict:
    """One encode at quality 4 in this (fresh) process: seconds, bpp, PSNR and peak memory."""
    import resource

    import torch
    from PIL import Image

    from neural_collages.codecs import compress, decompress
    from neural_collages.imaging.io import load_image_bytes
    from neural_collages.imaging.metrics import psnr

    torch.set_num_threads(threads)
    with Image.open(path) as im:
        im = im.convert("RGB")
        f = math.sqrt(megapixels * 1e6 / (im.width * im.height))
        if f > 1:
            raise SystemExit(f"{path} has fewer than {megapixels} megapixels; it is never enlarged")
        size = (round(im.width * f), round(im.height * f))
        im = im.resize(size, Image.LANCZOS)
        import io

        buffer = io.BytesIO()
        im.save(buffer, "PNG")
    image = load_image_bytes(buffer.getvalue())
    t0 = time.perf_counter()
    data = compress(image, "pifs", TIMED_QUALITY, search=search)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        quality = float(psnr(decompress(data), image))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"search": search, "width": size[0], "height": size[1], "megapixels": size[0] * size[1] / 1e6,
            "encode_s": seconds, "seconds_per_megapixel": seconds / (size[0] * size[1] / 1e6),
            "bpp": 8 * len(data) / (size[0] * size[1]), "psnr": quality, "peak_rss_gib": peak / 2**30}


def _in_fresh_process(*args) -> dict:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(encode_large, *args).result()


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for search, style in (("fast", "o-"), ("exhaustive", "s--")):
        rows = [r for r in result["scaling"]["runs"] if r["search"] == search]
        if rows:
            ax.loglog([r["megapixels"] for r in rows], [r["encode_s"] for r in rows], style, label=search)
    slope = result["scaling"]["fast_slope"]
    ax.set_xlabel("megapixels")
    ax.set_ylabel("encode seconds (quality 4, 2 threads)")
    ax.set_title(f"PIFS encode time vs pixels (fast: slope {slope:.2f})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--large", type=Path, default=LARGE)
    parser.add_argument("--megapixels", default="0.4,1,2,4,8,12")
    parser.add_argument("--exhaustive-max", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scaling-repeats", type=int, default=3,
                        help="fresh-process fast encodes per size (the median is kept)")
    parser.add_argument("--skip-kodak", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pifs_fast.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    result: dict = {
        "name": "pifs-fast-search",
        "description": __doc__.split("\n\n")[0],
        "meta": {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "machine": f"{platform.platform()}, {platform.machine()}", "torch": torch.__version__,
                 "threads": args.threads, "command": "python benchmarks/pifs_fast.py " + " ".join(sys.argv[1:])},
    }
    if not args.skip_kodak:
        rows = []
        for path in sorted(args.images.glob("*.png"))[: args.limit]:
            r = kodak_image(path, args.repeats)
            r["bd_rate_percent"] = _bd(r["exhaustive"]["points"], r["fast"]["points"])
            rows.append(r)
            print(f"{path.name}: search {r['exhaustive']['search_s']:.2f} s exhaustive, {r['fast']['search_s']:.2f} s "
                  f"fast; BD-rate fast vs exhaustive {r['bd_rate_percent']:+.2f} %", flush=True)

        def encode_s(r, search):
            return r[search]["search_s"] + r[search]["points"][TIMED_QUALITY - 1]["coding_s"]

        def median(value) -> float:
            return statistics.median(value(r) for r in rows)

        ex_curve, fast_curve = _mean_curve(rows, "exhaustive"), _mean_curve(rows, "fast")
        result["kodak"] = {
            "images": len(rows),
            "bd_rate_percent": _bd(ex_curve, fast_curve),  # fast against exhaustive, mean curves
            "median_image_bd_rate_percent": median(lambda r: r["bd_rate_percent"]),
            "median_search_speedup": median(lambda r: r["exhaustive"]["search_s"] / r["fast"]["search_s"]),
            "median_encode_speedup_q4": median(lambda r: encode_s(r, "exhaustive") / encode_s(r, "fast")),
            "median_encode_s_q4": {s: median(lambda r: encode_s(r, s)) for s in ("exhaustive", "fast")},
            "mean_curves": {"exhaustive": ex_curve, "fast": fast_curve},
            "results": rows,
        }
        k = result["kodak"]
        print(f"Kodak ({k['images']} images): BD-rate fast vs exhaustive {k['bd_rate_percent']:+.2f} %, "
              f"search {k['median_search_speedup']:.2f}x faster, encode (q4) {k['median_encode_speedup_q4']:.2f}x")

    runs = []
    for mp in (float(v) for v in args.megapixels.split(",")):
        searches = ("fast", "exhaustive") if mp <= args.exhaustive_max else ("fast",)
        for search in searches:
            # The fast encodes are short enough to repeat: the median run of --scaling-repeats.
            tries = [_in_fresh_process(str(args.large), mp, search, args.threads)
                     for _ in range(args.scaling_repeats if search == "fast" else 1)]
            r = sorted(tries, key=lambda t: t["encode_s"])[(len(tries) - 1) // 2]
            r["encode_s_runs"] = [t["encode_s"] for t in tries]
            runs.append(r)
            print(f"{r['width']}x{r['height']} ({r['megapixels']:.2f} MP) {search}: {r['encode_s']:.1f} s, "
                  f"{r['seconds_per_megapixel']:.1f} s/MP, {r['bpp']:.3f} bpp, {r['psnr']:.2f} dB, "
                  f"peak {r['peak_rss_gib']:.2f} GiB", flush=True)
    fast = [r for r in runs if r["search"] == "fast"]
    slope = float("nan")
    if len(fast) >= 2:
        slope = float(np.polyfit(np.log([r["megapixels"] for r in fast]), np.log([r["encode_s"] for r in fast]), 1)[0])
    result["scaling"] = {"image": str(args.large), "fast_slope": slope, "runs": runs}
    print(f"fast encode time vs pixels: log-log slope {slope:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(result) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
