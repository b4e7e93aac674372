"""PIFS encoder speed against its matrix-multiply floor and against a per-range loop, in one run.

For each image it measures, on the same machine and in the same process:

* ``encode_s``: a full ``collage compress`` encode at one quality (search, RD decisions, entropy
  coding) and ``decode_s`` (medians of repeats);
* ``matmul_floor_s``: the bare matrix products the exact search cannot avoid — for every plane
  and level, the centred searched ranges times all candidates, in the same cache-sized tiles,
  with nothing else (no scoring, no bookkeeping);
* ``loop_s``: a straightforward per-range implementation (a Python loop over ranges, each scored
  against all candidates with vectorised torch ops), timed on a sample of ranges of every level
  and scaled to all searched ranges (the scaling is stated in the JSON).

    python benchmarks/pifs_speed.py [--images DIR] [--limit N] [--quality Q] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks._common import png_images  # noqa: E402
from neural_collages.codecs import pifs  # noqa: E402
from neural_collages.imaging.io import load_image  # noqa: E402
from neural_collages.core.quadtree import QuadtreeCollage  # noqa: E402

LOOP_SAMPLE = 64  # ranges per level timed with the per-range loop


def searched_problems(image: torch.Tensor, config: pifs.PifsConfig):
    """(ranges, candidates) of every search the encoder runs, exactly as it selects them."""
    C, H, W = image.shape
    layouts = pifs.plane_layouts(W, H, C, config)
    planes = pifs.image_planes(image, layouts)
    for plane, layout in zip(planes, layouts):
        qt = QuadtreeCollage(layout.padded, config.block_sizes, config.domain_strides)
        x = plane.reshape(1, 1, *plane.shape)
        for level, op in enumerate(qt.operators):
            if not qt.usable[level]:
                continue
            ranges = op.ranges(x)[0, 0]
            centred = ranges - ranges.mean(-1, keepdim=True)
            active = centred.pow(2).sum(-1) > config.flat_variance * centred.shape[1]
            yield centred[active].contiguous(), op.candidates(x)[0, 0].contiguous()


def matmul_floor(problems, tile_r: int = 256, tile_elements: int = 1 << 20) -> float:
    total = 0.0
    for y, cands in problems:
        if not y.shape[0]:
            continue
        x_t = cands.T.contiguous()
        tile_d = max(1, tile_elements // min(y.shape[0], tile_r))
        t0 = time.perf_counter()
        for r0 in range(0, y.shape[0], tile_r):
            for d0 in range(0, x_t.shape[1], tile_d):
                y[r0 : r0 + tile_r] @ x_t[:, d0 : d0 + tile_d]
        total += time.perf_counter() - t0
    return total


def per_range_loop(problems, s_max: float) -> tuple[float, int, int]:
    """Seconds for a per-range loop over all searched ranges (timed on a sample, scaled)."""
    total, sampled, ranges_total = 0.0, 0, 0
    for y, cands in problems:
        if not y.shape[0]:
            continue
        sxx = cands.pow(2).sum(1)
        inv = torch.where(sxx > 1e-12, 1 / sxx.clamp(min=1e-12), torch.zeros_like(sxx))
        sample = y[:LOOP_SAMPLE]
        t0 = time.perf_counter()
        for row in sample:
            sxy = cands @ row
            s = (sxy * inv).clamp(-s_max, s_max)
            err = row.pow(2).sum() - 2 * s * sxy + s * s * sxx
            int(err.argmin())
        elapsed = time.perf_counter() - t0
        total += elapsed * y.shape[0] / sample.shape[0]
        sampled += sample.shape[0]
        ranges_total += y.shape[0]
    return total, sampled, ranges_total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "kodak")
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--quality", type=int, default=pifs.DEFAULT_QUALITY)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pifs_speed.json")
    args = parser.parse_args(argv)
    files = png_images(args.images, args.limit)
    torch.set_num_threads(args.threads)
    config = pifs.PifsConfig(quality=args.quality)
    rows = []
    for path in files:
        image = load_image(path)
        with torch.no_grad():
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                data = pifs.encode(image, config)
                times.append(time.perf_counter() - t0)
            encode_s = statistics.median(times)
            decode_s = statistics.median(
                (lambda t: (pifs.decode(data), time.perf_counter() - t)[1])(time.perf_counter())
                for _ in range(args.repeats)
            )
            problems = list(searched_problems(image, config))
            floor = statistics.median(matmul_floor(problems) for _ in range(args.repeats))
            loop_s, sampled, searched = per_range_loop(problems, config.s_max)
        row = {
            "image": path.name,
            "bpp": 8 * len(data) / (image.shape[1] * image.shape[2]),
            "encode_s": encode_s,
            "decode_s": decode_s,
            "matmul_floor_s": floor,
            "encode_over_floor": encode_s / floor,
            "per_range_loop_s": loop_s,
            "speedup_over_loop": loop_s / encode_s,
            "searched_ranges": searched,
            "loop_sampled_ranges": sampled,
        }
        rows.append(row)
        print(
            f"{path.name}: {row['bpp']:.3f} bpp, encode {encode_s:.2f} s = {row['encode_over_floor']:.2f}x the "
            f"matmul floor ({floor:.2f} s), decode {decode_s:.3f} s, per-range loop ~{loop_s:.0f} s "
            f"({row['speedup_over_loop']:.0f}x slower)",
            flush=True,
        )
    summary = {k: statistics.median(r[k] for r in rows) for k in
               ("encode_s", "decode_s", "matmul_floor_s", "encode_over_floor", "per_range_loop_s", "speedup_over_loop")}
    result = {
        "name": "pifs-speed",
        "description": f"PIFS encode/decode seconds, encode vs matmul floor and vs a per-range loop (quality "
                       f"{args.quality}, {args.threads} threads; loop time scaled from {LOOP_SAMPLE} ranges per level)",
        "meta": {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.platform()}, {platform.processor() or platform.machine()}",
            "torch": torch.__version__,
            "command": " ".join(["python", "benchmarks/pifs_speed.py", *(argv or sys.argv[1:])]),
        },
        "median": summary,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("median:", json.dumps({k: round(v, 3) for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
