"""Collage-operator decode throughput against a memory-bandwidth bound measured in the same run.

For each configuration (image size × scale × code kind) it times one collage step and a full
fixed-point decode, and, in the same process and right next to it, the time of one full-image
copy (``dst.copy_(src)``: read the image once and write it once, the least any step can do).
The ratio ``step time / copy time`` says how many full-image passes a step costs; it is robust to
the machine being shared, unlike raw seconds. Medians over ``--repeats``.

    python benchmarks/throughput.py [--repeats 7] [--threads 1] [--out benchmarks/results/throughput]
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
sys.path.insert(0, str(ROOT / "src"))

from neural_collages import CollageOperator, ISOMETRY_NAMES  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: builds index tables, allocator caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pifs_setup(H: int, W: int):
    """Classic fractal code: 4x4 ranges, 8x8 domains on a 4-px lattice, 8 isometries, k = 1."""
    op = CollageOperator((H, W), channels=3, range_size=4, domain_size=8, domain_stride=4, isometries=ISOMETRY_NAMES)
    return op, op.random_code(1, torch.Generator().manual_seed(0), kind="sparse")


def crops_setup(H: int, W: int):
    """Neural-Collage-style dense code: the image as a batch of 32x32 crops, 8x8 ranges, the whole
    crop as the domain under 8 isometries plus 16 auxiliary patches (24 candidates)."""
    op = CollageOperator((32, 32), channels=3, range_size=8, domain_size=32, isometries=ISOMETRY_NAMES, aux_patches=16)
    batch = (H // 32) * (W // 32)
    return op, op.random_code(batch, torch.Generator().manual_seed(0), kind="dense")


def whole_image_setup(H: int, W: int):
    """Fractalization-style dense code: 8x8 ranges, the whole image as the only domain, 8 isometries."""
    op = CollageOperator((H, W), channels=3, range_size=8, domain_size=(H, W), isometries=ISOMETRY_NAMES)
    return op, op.random_code(1, torch.Generator().manual_seed(0), kind="dense")


SETUPS = {"sparse-pifs": pifs_setup, "dense-crops": crops_setup, "dense-whole-image": whole_image_setup}
SIZES = [(256, 256), (512, 768), (1024, 1024)]
SCALES = [1, 2, 4]
MAX_PIXELS = 2**24  # skip decodes larger than 16 MP output per image (memory on small machines)


def run(repeats: int, steps: int):
    rows = []
    for kind, setup in SETUPS.items():
        for H, W in SIZES:
            op, code = setup(H, W)
            for scale in SCALES:
                pixels = scale * scale * H * W
                if pixels > MAX_PIXELS:
                    continue
                with torch.no_grad():
                    prepared = op.prepare(code, scale)
                    B = code.batch_size
                    z = torch.rand(B, op.channels, scale * op.size[0], scale * op.size[1])
                    dst = torch.empty_like(z)
                    t_prepare = timed(lambda: op.prepare(code, scale), max(1, repeats // 2))
                    t_step = timed(lambda: op.apply_prepared(z, prepared), repeats)
                    t_copy = timed(lambda: dst.copy_(z), repeats)
                    t_decode = timed(lambda: op.decode(code, scale, tol=0, max_steps=steps), max(1, repeats // 2))
                    _, stats = op.decode(code, scale, tol=1e-4, max_steps=200)
                row = {
                    "code": kind,
                    "image": f"{W}x{H}",
                    "scale": scale,
                    "output_megapixels": pixels / 1e6,
                    "candidates": op.num_candidates,
                    "step_s": t_step,
                    "copy_s": t_copy,
                    "step_over_copy": t_step / t_copy,
                    "step_megapixels_per_s": pixels / t_step / 1e6,
                    "prepare_s": t_prepare,
                    f"decode_{steps}_steps_s": t_decode,
                    "steps_to_1e-4": stats.steps,
                }
                rows.append(row)
                print(
                    f"{kind:18s} {W:5d}x{H:<5d} x{scale}  step {t_step * 1e3:8.2f} ms  "
                    f"{row['step_megapixels_per_s']:7.1f} MP/s  = {row['step_over_copy']:5.1f} copies  "
                    f"decode({steps}) {t_decode:6.3f} s  prepare {t_prepare:6.3f} s",
                    flush=True,
                )
    return rows


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for kind in SETUPS:
        sel = [r for r in rows if r["code"] == kind]
        x = [r["output_megapixels"] for r in sel]
        axes[0].plot(x, [r["step_megapixels_per_s"] for r in sel], "o-", label=kind)
        axes[1].plot(x, [r["step_over_copy"] for r in sel], "o-", label=kind)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("output megapixels per image (sizes x scales)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("collage step throughput (MP/s)")
    axes[1].set_ylabel("step time / full-image copy time")
    axes[0].legend()
    fig.suptitle("CollageOperator step throughput (CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="steps of the timed full decode (default 10)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "throughput")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run(args.repeats, args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "name": "collage-operator-throughput",
        "description": "CollageOperator step/decode times vs a full-image copy measured in the same run (medians)",
        "meta": {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "threads": args.threads,
            "repeats": args.repeats,
            "machine": f"{platform.platform()}, {platform.processor() or platform.machine()}",
            "command": " ".join(["python", "benchmarks/throughput.py", *(argv or sys.argv[1:])]),
        },
        "results": rows,
    }
    (args.out / "throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, args.out / "throughput.png")
    print(f"wrote {args.out / 'throughput.json'} and throughput.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
