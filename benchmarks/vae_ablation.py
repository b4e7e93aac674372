"""Collage VAE ablation at an equal number of training steps: auxiliary patches global, per sample, none.

Each run is a checkpoint of ``collage vae train`` (same seed, hence the same batches and
binarisations) taken at the same step. Reported per run: the test negative ELBO of the raw
weights and of their EMA on the first ``--limit`` test digits (binarised with seed 0; one
posterior sample per digit, the same noise for every run), the training negative ELBO smoothed
in ``log.jsonl`` at that step, and the share of each term of the code at the 1× fixed point.

    python benchmarks/vae_ablation.py global=runs/a/snap-2000.safetensors none=runs/b/checkpoint.safetensors ...
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks._common import dumps  # noqa: E402
from benchmarks.vae import code_usage  # noqa: E402
from neural_collages.training.vae import load_vae_checkpoint, mean_negative_elbo  # noqa: E402
from neural_collages.vae.mnist import binarise_fixed, load_digits  # noqa: E402


def training_nelbo(log: Path, step: int) -> float | None:
    if not log.is_file():
        return None
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if row.get("step") == step and "nelbo" in row:
            return row["nelbo"]
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="NAME=CHECKPOINT pairs")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "vae_ablation.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    test = binarise_fixed(load_digits(None, "test")[: args.limit])
    rows = []
    for spec in args.runs:
        name, _, path = spec.partition("=")
        ck = load_vae_checkpoint(Path(path))
        model, ema = ck.model.eval(), ck.ema.eval()
        with torch.no_grad():
            row = {"name": name, "checkpoint": path, "step": ck.step, "aux": model.config.aux,
                   "decoder": model.config.decoder, "parameters": model.num_parameters(),
                   "train_seconds": ck.seconds,
                   "test_nelbo_raw": mean_negative_elbo(model, test), "test_nelbo_ema": mean_negative_elbo(ema, test),
                   "train_nelbo_smoothed": training_nelbo(Path(path).parent / "log.jsonl", ck.step)}
            if model.resolution_independent:
                row["code_usage"] = code_usage(model)
        print(json.dumps({k: v for k, v in row.items() if k != "code_usage"}), flush=True)
        rows.append(row)
    result = {"runs": rows, "test_digits": args.limit, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
              "command": "python benchmarks/vae_ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
