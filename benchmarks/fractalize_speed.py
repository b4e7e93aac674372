"""Fractal art: time to fractalize a 512×512 RGB image, and what the fine-tuning buys.

For each image (a 512×512 centre crop of a Kodak image) it runs ``fractalize`` with the default
options, ``--repeats`` times, and reports the median wall time, the collage loss and the
fixed point's PSNR of the closed form and after fine-tuning (the same in every repeat: fitting is
deterministic), the size of the saved code, and the time to render it at 4×. Same process, same
thread setting for everything.

    python benchmarks/fractalize_speed.py [--images DIR] [--limit N] [--repeats R] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from neural_collages.codecs.fractal_art import encode_art, render  # noqa: E402
from neural_collages.fractal_art import FractalizeOptions, fractalize  # noqa: E402
from neural_collages.imaging.io import load_image  # noqa: E402


def psnr(mse: float) -> float:
    return 10 * math.log10(1 / max(mse, 1e-12))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "kodak")
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fractalize_speed.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = FractalizeOptions()
    rows = []
    for path in sorted(args.images.glob("*.png"))[: args.limit]:
        x = load_image(path, mode="rgb")
        H, W = x.shape[-2:]
        top, left = (H - 512) // 2, (W - 512) // 2
        x = x[:, top : top + 512, left : left + 512].contiguous()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            art, report = fractalize(x, options)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        render(art, 4)
        render_seconds = time.perf_counter() - t0
        row = {
            "image": path.name,
            "size": [512, 512],
            "fractalize_seconds": round(statistics.median(times), 3),
            "collage_loss_closed_form": report.collage_loss_closed_form,
            "collage_loss_fine_tuned": report.collage_loss,
            "psnr_closed_form": round(psnr(report.mse_closed_form), 3),
            "psnr_fine_tuned": round(psnr(report.mse), 3),
            "code_bytes": len(encode_art(art)),
            "render_4x_seconds": round(render_seconds, 3),
        }
        print(json.dumps(row))
        rows.append(row)
    result = {
        "name": "fractalize_speed",
        "description": "fractalize() with default options on 512x512 centre crops of Kodak images; "
                       "median wall time over repeats; PSNR of the fixed point vs the crop",
        "options": {"range_size": options.range_size, "isometries": list(options.isometries), "s_max": options.s_max,
                    "steps": options.steps, "unroll": options.unroll, "warm_steps": options.warm_steps},
        "command": "python benchmarks/fractalize_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "results": rows,
        "median_fractalize_seconds": statistics.median(r["fractalize_seconds"] for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median {result['median_fractalize_seconds']:.2f} s per 512x512 image; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
