"""Collage VAE vs its plain (pixel-decoder) baseline on MNIST: likelihood, any-resolution samples, speed.

1. **Likelihood**: test negative ELBO and importance-weighted NLL bound (``--k`` samples, nats
   and bits/dim) of both shipped models (or ``--models``) on the first ``--limit`` test digits,
   binarised once with seed 0, next to the published anchors (Burda et al. 2016; NVAE).
2. **Samples at any scale**: the same latents (one seed) decoded at 1×, 10× and 40×; the 40×
   decode average-pooled by 40 against the 1× decode (consistency); smoothness of the 40×
   Bernoulli means against bicubic upsampling of the 1× means: total variation per digit side
   and the share of pixels in the 0.1–0.9 transition band (relative to the ink area).
   Writes ``docs/images/vae_samples.png``.
3. **Speed**: seconds per sampled digit at 1×, 10× and 40× (batches of 64, median of
   ``--repeats``) and the cost of one collage step at 40× relative to copying the image.

    python benchmarks/vae.py [--k 100] [--limit 1000] [--threads T] [--out FILE]
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
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks._common import dumps  # noqa: E402
from neural_collages.vae.files import find_vae, load_vae  # noqa: E402
from neural_collages.vae.mnist import TEST_BINARISATION_SEED, binarise_fixed, load_digits  # noqa: E402
from neural_collages.vae.model import mean_bounds  # noqa: E402

ANCHORS = [
    {"model": "VAE, 2 stochastic layers (Burda et al. 2016, Table 1)", "nll_nats": 85.33},
    {"model": "IWAE, 2 stochastic layers, k=50 (Burda et al. 2016, Table 1)", "nll_nats": 82.90},
    {"model": "NVAE (Vahdat & Kautz 2020)", "nll_nats": 78.01},
]


def likelihood(model, x, k: int, seed: int = 0, chunk: int = 50) -> dict:
    t0 = time.perf_counter()
    bounds = mean_bounds(model, x, k, torch.Generator().manual_seed(seed), chunk, progress=True)
    return {**bounds, "seconds": time.perf_counter() - t0}


def smoothness(means: torch.Tensor) -> dict:
    """Per-digit statistics of Bernoulli means ``(B, 1, S, S)``, medians over the batch."""
    side = means.shape[-1]
    tv = ((means[..., 1:, :] - means[..., :-1, :]).abs().flatten(1).sum(1)
          + (means[..., :, 1:] - means[..., :, :-1]).abs().flatten(1).sum(1)) / side
    band = ((means > 0.1) & (means < 0.9)).flatten(1).float().mean(1)
    ink = (means > 0.5).flatten(1).float().mean(1).clamp_min(1e-6)
    return {"total_variation_per_side": float(tv.median()), "transition_band_share": float(band.median()),
            "transition_band_over_ink": float((band / ink).median())}


@torch.no_grad()
def scales_and_smoothness(model, n: int, seed: int, temperature: float) -> tuple[dict, dict]:
    g = lambda: torch.Generator().manual_seed(seed)  # noqa: E731  the same latents at every scale
    h, _ = model.run_topdown(None, n, g(), temperature)
    z1, z40 = model.head.decode(h, 1), model.head.decode(h, 40)
    means = {1: torch.sigmoid(model.head.logits(z1)), 10: model.decode_state(h, 10),
             40: torch.sigmoid(model.head.logits(z40))}
    bicubic = F.interpolate(means[1], scale_factor=40, mode="bicubic", align_corners=False).clamp(0, 1)
    result = {
        "digits": n, "seed": seed, "temperature": temperature,
        "consistency_max_abs_fixed_point": float((F.avg_pool2d(z40, 40) - z1).abs().max()),
        "consistency_max_abs_means": float((F.avg_pool2d(means[40], 40) - means[1]).abs().max()),
        "collage_40x": smoothness(means[40]), "bicubic_40x": smoothness(bicubic),
        "nearest_40x": smoothness(means[1].repeat_interleave(40, -2).repeat_interleave(40, -1)),
    }
    for name, key in (("tv_ratio_collage_over_bicubic", "total_variation_per_side"),
                      ("band_ratio_collage_over_bicubic", "transition_band_over_ink")):
        below = result["bicubic_40x"][key]
        result[name] = result["collage_40x"][key] / below if below > 0 else None
    return result, {**means, "bicubic": bicubic}


@torch.no_grad()
def code_usage(model, n: int = 64, seed: int = 0) -> dict:
    """How sampled codes build their digits: domain weights (self-similarity), aux patches, biases.

    At the 1× fixed point ``z`` each range is ``Σ w_d·domain_d(z) + Σ w_a·aux_a + b``: the mean
    absolute size of each of the three terms over all pixels, and how often the domain weights
    sit on the L1 bound ``s_max``.
    """
    h, _ = model.run_topdown(None, n, torch.Generator().manual_seed(seed))
    code, aux_w, patches = model.head.codes(h)
    op = model.head.operator
    z = model.head.decode(h, 1)
    n_dom = op.num_candidates - op.num_aux
    cand = op.candidates(z)  # (B, 1, D, P)
    domain = torch.matmul(code.weights[..., :n_dom], cand[:, :, :n_dom])
    aux = torch.matmul(code.weights[..., n_dom:], cand[:, :, n_dom:]) if op.num_aux else torch.zeros_like(domain)
    if aux_w is not None:  # per-sample patches: their constant image, as ranges
        aux = aux + op.ranges(model.head.aux_offset(aux_w, patches, 1))
    l1 = code.weights[..., :n_dom].abs().sum(-1)
    return {"domain_term_mean_abs": float(domain.abs().mean()), "aux_term_mean_abs": float(aux.abs().mean()),
            "bias_mean_abs": float(code.bias.abs().mean()), "domain_l1_mean": float(l1.mean()),
            "share_of_ranges_at_the_bound": float((l1 > 0.99 * model.config.s_max).float().mean()),
            "s_max": model.config.s_max, "gain": float(model.head.gain)}


@torch.no_grad()
def speed(model, repeats: int) -> dict:
    rows = []
    for scale in (1, 10, 40):
        times = []
        for r in range(repeats):
            t0 = time.perf_counter()
            model.sample(64, scale, 1.0, torch.Generator().manual_seed(r))
            times.append(time.perf_counter() - t0)
        seconds = statistics.median(times)
        rows.append({"scale": scale, "batch": 64, "seconds_per_batch": seconds, "seconds_per_digit": seconds / 64})
        print(f"sample 64 digits at {scale}x: {seconds:.2f} s", flush=True)
    # One collage step at 40x on 8 digits vs a copy of the same image.
    h, _ = model.run_topdown(None, 8, torch.Generator().manual_seed(0))
    code, _, _ = model.head.codes(h)
    op = model.head.operator
    prepared = op.prepare(code, 40)
    z = torch.rand(8, 1, 1120, 1120)
    step_t, copy_t = [], []
    for _ in range(max(3, repeats)):
        t0 = time.perf_counter()
        op.apply_prepared(z, prepared)
        step_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        z.clone()
        copy_t.append(time.perf_counter() - t0)
    return {"sampling": rows, "step_40x_seconds": statistics.median(step_t),
            "copy_40x_seconds": statistics.median(copy_t),
            "step_over_copy": statistics.median(step_t) / statistics.median(copy_t),
            "decode_steps": model.config.decode_steps, "candidates": op.num_candidates}


def figure(means: dict, path: Path, count: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [("1x (28 px)", means[1]), ("bicubic 40x of the 1x", means["bicubic"]),
               ("collage 10x (280 px)", means[10]), ("collage 40x (1120 px)", means[40])]
    fig, axes = plt.subplots(count, len(columns) + 1, figsize=(2.2 * (len(columns) + 1), 2.2 * count))
    for i in range(count):
        for j, (title, m) in enumerate(columns):
            ax = axes[i, j]
            ax.imshow(m[i, 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest" if j == 0 else "antialiased")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
        # Native pixels of a 280x280 crop of the 40x decode, where the digit's stroke is.
        m40 = means[40][i, 0]
        cy, cx = (int(v) for v in torch.nonzero(m40 > 0.5).float().mean(0).round()) if (m40 > 0.5).any() else (560, 560)
        cy, cx = min(max(cy, 140), 980), min(max(cx, 140), 980)
        ax = axes[i, -1]
        ax.imshow(m40[cy - 140 : cy + 140, cx - 140 : cx + 140].numpy(), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        if i == 0:
            ax.set_title("40x, 280 px crop", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mnist-collage,mnist-plain", help="comma-separated MODEL arguments")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--limit", type=int, default=1000, help="first N test digits (10000: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=0.85, help="prior temperature of the figure's samples")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "images" / "vae_samples.png")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "vae.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    test = binarise_fixed(load_digits(None, "test")[: args.limit])
    results = {"models": [], "anchors": ANCHORS}
    collage = None
    for spec in args.models.split(","):
        model, info = load_vae(find_vae(spec))
        row = {"model": spec, "decoder": model.config.decoder, "parameters": model.num_parameters(),
               "config": model.config.to_dict(), "training": info,
               "test": likelihood(model, test, args.k)}
        print(f"{spec}: -ELBO {row['test']['elbo_nats']:.2f}, NLL <= {row['test']['nll_nats']:.2f} nats "
              f"(k={args.k}, {row['test']['n']} digits), {row['parameters']} parameters", flush=True)
        results["models"].append(row)
        if model.resolution_independent and collage is None:
            collage = (spec, model)
    if collage is not None:
        spec, model = collage
        scales, means = scales_and_smoothness(model, 64, seed=0, temperature=args.temperature)
        results["scales"] = {"model": spec, **scales}
        print(f"40x pooled vs 1x: max |dz| {scales['consistency_max_abs_fixed_point']:.2e}; ratios collage/bicubic: "
              f"TV {scales['tv_ratio_collage_over_bicubic']}, transition band {scales['band_ratio_collage_over_bicubic']}")
        results["code_usage"] = {"model": spec, **code_usage(model)}
        print(f"code usage: {results['code_usage']}", flush=True)
        results["speed"] = {"model": spec, **speed(model, args.repeats)}
        figure(means, args.figure)
    plain = [r for r in results["models"] if r["decoder"] == "pixel"]
    coll = [r for r in results["models"] if r["decoder"] == "collage"]
    if plain and coll:
        results["collage_minus_plain_nll_nats"] = coll[0]["test"]["nll_nats"] - plain[0]["test"]["nll_nats"]
    results["test_binarisation_seed"] = TEST_BINARISATION_SEED
    results["machine"] = {"threads": args.threads, "platform": platform.platform(), "torch": torch.__version__}
    results["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    results["command"] = "python benchmarks/vae.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(results))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
