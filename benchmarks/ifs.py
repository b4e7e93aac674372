"""IFS point clouds: chaos-game speed, recovery of classic fractals, and the amortised encoder.

1. **Chaos game**: points per second rendering the fern (2-D) and the Sierpinski tetrahedron
   (3-D), 10^6 and 10^7 points, median of ``--repeats``.
2. **Gallery**: the fern, the Sierpinski triangle and tetrahedron sampled with ``--points``
   points, fitted from scratch; Chamfer(fitted attractor, cloud) against the noise floor
   Chamfer(fresh sample of the true IFS, cloud); a ring (no IFS of its own) approximated by 8
   maps against the floor of two samples of the ring. Writes ``docs/images/ifs_gallery.png``.
3. **Encoder**: on held-out attractors of random IFS (the encoder's training distribution, a
   seed it never saw) and on the classic fractals with a matching encoder: the encoder alone,
   the encoder + ``--refine`` fitting steps, and the fit from scratch — attractor Chamfer (unit
   box) and wall time of each, measured in the same run.

    python benchmarks/ifs.py [--points N] [--random K] [--refine S] [--threads T] [--out FILE]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks._common import dumps  # noqa: E402
from neural_collages.ifs.distances import chamfer  # noqa: E402
from neural_collages.ifs.encoder import find_encoder, load_encoder  # noqa: E402
from neural_collages.ifs.fit import Normalisation, amortised_fit, fit_ifs  # noqa: E402
from neural_collages.ifs.gallery import FERN, SIERPINSKI, TETRAHEDRON, gallery, sample, save_gallery  # noqa: E402
from neural_collages.ifs.render import chaos_game  # noqa: E402
from neural_collages.training.ifs_encoder import random_maps  # noqa: E402


def chaos_speed(repeats: int) -> list[dict]:
    rows = []
    for classic in (FERN, TETRAHEDRON):
        A, t, p = classic.maps()
        for points in (10**6, 10**7):
            times = []
            for r in range(repeats):
                _, stats = chaos_game(A, t, p, points, seed=r, return_stats=True)
                times.append(stats.seconds)
            seconds = statistics.median(times)
            rows.append({"ifs": classic.name, "dim": classic.dim, "points": points, "seconds": seconds,
                         "points_per_second": points / seconds})
            print(f"chaos game {classic.name} {points:.0e} points: {points / seconds / 1e6:.1f} M points/s", flush=True)
    return rows


def unit_chamfer(result, cloud: torch.Tensor, points: int) -> float:
    """Chamfer(fitted attractor, cloud) in the unit box of the cloud's normalisation."""
    return chamfer(result.sample(points, seed=7), cloud) / result.normalisation.scale


def compare(name: str, cloud: torch.Tensor, num_maps: int, refine: int, floor: float | None) -> dict:
    encoder, _ = load_encoder(find_encoder(None, cloud.shape[1], num_maps))
    n = len(cloud)
    t0 = time.perf_counter()
    alone = amortised_fit(cloud, encoder, 0)
    t_alone = time.perf_counter() - t0
    t0 = time.perf_counter()
    refined = amortised_fit(cloud, encoder, refine)
    t_refined = time.perf_counter() - t0
    t0 = time.perf_counter()
    scratch = fit_ifs(cloud, num_maps)
    t_scratch = time.perf_counter() - t0
    row = {"cloud": name, "dim": cloud.shape[1], "maps": num_maps, "points": n,
           "encoder_chamfer": unit_chamfer(alone, cloud, n), "encoder_seconds": t_alone,
           "refined_chamfer": unit_chamfer(refined, cloud, n), "refined_seconds": t_refined,
           "scratch_chamfer": unit_chamfer(scratch, cloud, n), "scratch_seconds": t_scratch,
           "noise_floor": floor, "refine_steps": refine}
    row["speedup_encoder_vs_scratch"] = t_scratch / t_alone
    row["speedup_refined_vs_scratch"] = t_scratch / t_refined
    row["refined_vs_scratch_chamfer"] = row["refined_chamfer"] / row["scratch_chamfer"]
    row["encoder_vs_scratch_chamfer"] = row["encoder_chamfer"] / row["scratch_chamfer"]
    print(f"{name:14s} encoder {row['encoder_chamfer']:.4f} ({t_alone:.2f} s) | +{refine} steps "
          f"{row['refined_chamfer']:.4f} ({t_refined:.1f} s) | scratch {row['scratch_chamfer']:.4f} "
          f"({t_scratch:.1f} s)", flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--random", type=int, default=4, help="held-out random IFS per encoder")
    parser.add_argument("--refine", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ifs.json")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "images" / "ifs_gallery.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    speed = chaos_speed(args.repeats)
    entries = gallery(("fern", "sierpinski", "tetrahedron", "ring"), points=args.points)
    for e in entries:
        print(f"gallery {e.name}: x{e.ratio:.2f} of the noise floor, {e.fit_seconds:.1f} s", flush=True)
    with_figure = args.figure.parent / "_gallery"
    with_figure.mkdir(parents=True, exist_ok=True)
    save_gallery(entries, with_figure, force=True)
    (with_figure / "gallery.png").replace(args.figure)
    for f in with_figure.iterdir():
        f.unlink()
    with_figure.rmdir()

    encoders = []
    g = torch.Generator().manual_seed(2026_12_06)  # held out: training draws from seeds 0.. of its own
    for dim, maps in ((2, 3), (2, 4), (3, 4)):
        for k in range(args.random):
            A, t = random_maps(dim, maps, g)
            cloud = chaos_game(A, t, None, args.points // 5, seed=k)
            cloud = Normalisation.of(cloud).to_unit(cloud.double()).float()
            encoders.append(compare(f"random-{dim}d-{maps}-{k}", cloud, maps, args.refine, None))
    for classic in (SIERPINSKI, FERN, TETRAHEDRON):
        cloud = sample(classic, args.points)
        floor = chamfer(sample(classic, args.points, seed=1), cloud) / Normalisation.of(cloud).scale
        encoders.append(compare(classic.name, cloud, classic.num_maps, args.refine, floor))

    def median(key):
        return statistics.median(r[key] for r in encoders)

    result = {
        "name": "ifs",
        "command": "python benchmarks/ifs.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"threads": args.threads, "platform": platform.platform(), "torch": torch.__version__},
        "chaos_game": speed,
        "gallery": [e.summary() for e in entries],
        "encoder": encoders,
        "encoder_summary": {
            "median_speedup_encoder_vs_scratch": median("speedup_encoder_vs_scratch"),
            "median_speedup_refined_vs_scratch": median("speedup_refined_vs_scratch"),
            "median_refined_vs_scratch_chamfer": median("refined_vs_scratch_chamfer"),
            "median_encoder_vs_scratch_chamfer": median("encoder_vs_scratch_chamfer"),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(result))
    print(result["encoder_summary"])
    print(f"wrote {args.out} and {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
