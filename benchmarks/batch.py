"""Batch throughput on Dask against a plain loop, and a 20 MP photo tiled, compressed and stitched.

Folder: ``--photos`` training photos from the registry packages (``training.corpus.photo_sources``,
never Kodak, the 20 MP Kleiber left out) reduced to ``--side`` px on the long side (Lanczos), as
PNG. For each codec, in one run: a plain loop in this process (read, compress, decode for the
PSNR, write: the same work and the same one torch thread as a batch job, without engine or
manifest), ``compress_folder`` on a local Dask cluster of 1 and of 2 worker processes (wall time
from the call, cluster start included, and the start alone), medians over ``--repeats``.

Large image: Kleiber (6028x3391, 20.4 MP, lomiri-wallpapers-20.04) cut into ``--tile`` px tiles,
compressed on 2 workers, stitched at 1x; time, bpp and PSNR of the mosaic against the photo. Whole:
the neural codec compresses the full photo in one call (it fits); the fractal codec's exhaustive
search is quadratic in the area (hours at 20 MP), so it is compared whole vs tiled on a
1536x1024 crop instead.

    python benchmarks/batch.py [--photos 16] [--side 512] [--repeats 3] [--codecs pifs,neural] [--no-big]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import ROOT, dumps, setup_paths  # noqa: E402

setup_paths()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from neural_collages.batch import compress_folder, make_engine, mosaic_image, tile_image  # noqa: E402
from neural_collages.batch.tasks import EncodeSettings, warm_up  # noqa: E402
from neural_collages.codecs import compress, decompress  # noqa: E402
from neural_collages.imaging.atomic import atomic_write_bytes  # noqa: E402
from neural_collages.imaging.io import load_image, load_image_bytes, to_float  # noqa: E402
from neural_collages.imaging.metrics import psnr  # noqa: E402
from neural_collages.training.corpus import photo_sources  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "batch.json"
PLOT = ROOT / "benchmarks" / "results" / "batch.png"
BIG_NAME = "Kleiber_by_Lukas_Baubkus.jpg"


def build_folder(root: Path, count: int, side: int) -> list[str]:
    sources = [p for p in photo_sources() if p.name != BIG_NAME][:count]
    if len(sources) < count:
        raise SystemExit(f"only {len(sources)} training photos installed; see ../shared/DATA.md")
    names = []
    for path in sources:
        im = Image.open(path).convert("RGB")
        scale = side / max(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        name = f"{path.parent.parent.parent.name if path.name == '2560x1600.jpg' else path.stem}.png"
        im.save(root / name)
        names.append(name)
    return names


def plain_loop(src: Path, dst: Path, settings: EncodeSettings) -> float:
    """What a user would write by hand for the same files and PSNRs, one torch thread."""
    t0 = time.perf_counter()
    dst.mkdir(parents=True)
    for path in sorted(src.glob("*.png")):
        image = load_image_bytes(path.read_bytes(), path.name, mode="keep")
        data = compress(image, settings.codec, settings.quality)
        float(psnr(image, decompress(data)))
        atomic_write_bytes(dst / f"{path.stem}.clg", data)
    return time.perf_counter() - t0


def dask_run(src: Path, dst: Path, settings: EncodeSettings, workers: int) -> dict:
    """Seconds of a whole batch on a new local cluster, and of its parts: the cluster's start, the
    workers' warm-up (what compress_folder does before its first job), the jobs, the shutdown."""
    t0 = time.perf_counter()
    with make_engine(workers) as engine:
        engine.client
        t1 = time.perf_counter()
        engine.prepare(warm_up, settings)
        t2 = time.perf_counter()
        summary = compress_folder(src, dst, settings, engine, progress=False)
        t3 = time.perf_counter()
    t4 = time.perf_counter()
    assert summary.ok and summary.done == len(list(src.glob("*.png"))), summary
    return {"total": t4 - t0, "start": t1 - t0, "warm_up": t2 - t1, "jobs": t3 - t2, "close": t4 - t3}


def folder_benchmark(work: Path, codecs: list[str], count: int, side: int, repeats: int) -> dict:
    src = work / "photos"
    src.mkdir()
    names = build_folder(src, count, side)
    pixels = sum(Image.open(src / n).size[0] * Image.open(src / n).size[1] for n in names)
    results = {"photos": len(names), "side": side, "megapixels": pixels / 1e6, "codecs": {}}
    torch.set_num_threads(1)
    for codec in codecs:
        settings = EncodeSettings(codec)
        times: dict[str, list[float]] = {"plain_loop_s": []}
        plain_loop(src, work / f"warm-{codec}", settings)  # this process's own imports and model load
        for r in range(repeats):
            times["plain_loop_s"].append(plain_loop(src, work / f"plain-{codec}-{r}", settings))
            for w in (1, 2):
                for part, seconds in dask_run(src, work / f"dask{w}-{codec}-{r}", settings, w).items():
                    times.setdefault(f"dask_{w}_{part}_s", []).append(seconds)
            for p in (work / f"dask1-{codec}-{r}").glob("*.clg"):  # same bytes, whatever the engine
                assert p.read_bytes() == (work / f"plain-{codec}-{r}" / p.name).read_bytes(), p
        med = {k: statistics.median(v) for k, v in times.items()}
        n = len(names)
        results["codecs"][codec] = {
            "median": med,
            "runs": times,
            "images_per_s": {"plain_loop": n / med["plain_loop_s"],
                             "dask_1_worker": n / med["dask_1_total_s"], "dask_2_workers": n / med["dask_2_total_s"],
                             "dask_1_worker_jobs_only": n / med["dask_1_jobs_s"],
                             "dask_2_workers_jobs_only": n / med["dask_2_jobs_s"]},
            "scaling_2_over_1_workers": med["dask_1_total_s"] / med["dask_2_total_s"],
            "scaling_2_over_1_workers_jobs_only": med["dask_1_jobs_s"] / med["dask_2_jobs_s"],
            # With the cluster's start and shutdown (a fixed cost per run, a few seconds) ...
            "engine_overhead_1_worker": med["dask_1_total_s"] / med["plain_loop_s"] - 1,
            # ... and per image, once the cluster is up (the plain loop's process had its imports done).
            "engine_overhead_1_worker_jobs_only": med["dask_1_jobs_s"] / med["plain_loop_s"] - 1,
        }
        print(codec, dumps(results["codecs"][codec]["images_per_s"]), flush=True)
    return results


def tiled(image_path: Path, work: Path, settings: EncodeSettings, tile: int, workers: int) -> dict:
    folder = work / f"tiles-{settings.codec}-{image_path.stem}"
    with make_engine(workers) as engine:
        t0 = time.perf_counter()
        summary = tile_image(image_path, folder, tile, settings, engine, progress=False)
        encode = time.perf_counter() - t0
        t0 = time.perf_counter()
        canvas = mosaic_image(folder, 1, engine, progress=False)
        stitch = time.perf_counter() - t0
    assert summary.ok
    original = load_image(image_path, mode="keep")
    mosaic = to_float(torch.from_numpy(canvas).permute(2, 0, 1).contiguous())
    size = sum(p.stat().st_size for p in folder.glob("*.clg"))
    return {"tiles": summary.total, "encode_s": encode, "mosaic_s": stitch, "bytes": size,
            "bpp": 8 * size / (original.shape[1] * original.shape[2]), "psnr": float(psnr(original, mosaic))}


def whole(image_path: Path, settings: EncodeSettings) -> dict:
    original = load_image(image_path, mode="keep")
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    data = compress(original, settings.codec, settings.quality)
    encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded = decompress(data)
    return {"encode_s": encode, "decode_s": time.perf_counter() - t0, "bytes": len(data), "threads": 2,
            "bpp": 8 * len(data) / (original.shape[1] * original.shape[2]), "psnr": float(psnr(original, decoded))}


def big_benchmark(work: Path, tile: int) -> dict:
    big = next((p for p in photo_sources() if p.name == BIG_NAME), None)
    if big is None:
        raise SystemExit("Kleiber is not installed: apt-get install lomiri-wallpapers-20.04")
    width, height = Image.open(big).size
    crop_path = work / "kleiber-crop.png"
    Image.open(big).convert("RGB").crop((2000, 1000, 3536, 2024)).save(crop_path)
    out = {"image": big.name, "width": width, "height": height, "tile": tile, "workers": 2}
    for codec in ("pifs", "neural"):
        settings = EncodeSettings(codec)
        out[codec] = {"tiled": tiled(big, work, settings, tile, 2)}
        print(codec, "tiled", dumps(out[codec]["tiled"]), flush=True)
    out["neural"]["whole"] = whole(big, EncodeSettings("neural"))
    out["pifs_crop_1536x1024"] = {"tiled": tiled(crop_path, work, EncodeSettings("pifs"), tile, 2),
                                  "whole": whole(crop_path, EncodeSettings("pifs"))}
    print(dumps(out), flush=True)
    return out


def plot(result: dict, path: Path) -> None:
    """Images per second, plain loop vs 1 and 2 Dask workers, per codec (cluster start included and not)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codecs = result["folder"]["codecs"]
    fig, axes = plt.subplots(1, len(codecs), figsize=(4.2 * len(codecs), 3.4), squeeze=False)
    bars = [("plain loop", "plain_loop"), ("Dask\n1 worker", "dask_1_worker"), ("Dask\n2 workers", "dask_2_workers")]
    for ax, (codec, r) in zip(axes[0], codecs.items()):
        rates = r["images_per_s"]
        x = range(len(bars))
        ax.bar(x, [rates[k] for _, k in bars], color=["#888", "#4a7ab5", "#2b4f80"], label="whole run")
        ax.scatter([1, 2], [rates["dask_1_worker_jobs_only"], rates["dask_2_workers_jobs_only"]], color="k",
                   marker="_", s=400, zorder=3, label="jobs only (cluster up)")
        ax.set_xticks(list(x), [b for b, _ in bars])
        ax.set_ylabel("images / s")
        ax.set_title(f"{codec}: {result['folder']['photos']} photos, {result['folder']['side']} px")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--codecs", default="pifs,neural")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--no-big", action="store_true", help="skip the 20 MP photo")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from --out")
    args = parser.parse_args(argv)
    if args.plot_only:
        import json

        plot(json.loads(args.out.read_text()), PLOT)
        return 0
    work = Path(tempfile.mkdtemp(prefix="collage-batch-bench-"))
    try:
        result = {
            "name": "batch",
            "description": "collage batch: images/s on a local Dask cluster of 1 and 2 worker processes vs a plain "
                           "loop (same work, 1 torch thread), medians over repeats; a 20 MP photo tiled, compressed "
                           "and stitched vs compressed whole",
            "meta": {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "machine": f"{platform.platform()}, {platform.machine()}", "torch": torch.__version__,
                     "cores": len(__import__("os").sched_getaffinity(0)),
                     "command": "python benchmarks/batch.py " + " ".join(argv if argv is not None else sys.argv[1:])},
            "folder": folder_benchmark(work, args.codecs.split(","), args.photos, args.side, args.repeats),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(dumps(result))  # kept if the large-image part fails
        if not args.no_big:
            result["large_image"] = big_benchmark(work, args.tile)
            args.out.write_text(dumps(result))
        plot(result, PLOT)
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
