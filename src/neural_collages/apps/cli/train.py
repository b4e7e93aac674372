"""``collage train``: train a Neural Collage codec model (one process, or data-parallel under torchrun)."""

from __future__ import annotations

import math
from pathlib import Path

from ...errors import ConfigurationError, OutputExistsError
from .common import positive_int, set_threads


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a Neural Collage codec model",
        description="Train a Neural Collage codec model on a corpus built by `collage corpus`, for one "
        "rate-distortion trade-off (--lam). Writes OUT/checkpoint.safetensors, OUT/log.jsonl and, at the end, "
        "OUT/model.safetensors (the file the codec loads). Runs under torchrun for data-parallel training.",
    )
    p.add_argument("corpus", type=Path, help="corpus folder (from `collage corpus`)")
    p.add_argument("out", type=Path, help="output folder (checkpoint, log, model)")
    p.add_argument("--lam", type=float, default=0.004, help="rate-distortion trade-off: bpp + LAM * MSE (8-bit)")
    p.add_argument("--steps", type=positive_int, default=6000, help="training steps (default: %(default)s)")
    p.add_argument("--batch", type=positive_int, default=16, help="64x64 patches per step and process")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget: the schedule ends at --steps or after this many minutes, whichever is first")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--crop", type=positive_int, default=32, help="crop size of the codec (default: %(default)s)")
    p.add_argument("--mean-step", type=float, default=2.0, help="quantisation step of range means (8-bit units)")
    p.add_argument("--no-context", action="store_true",
                   help="factorized coefficient tables without the row-above context (smaller model, ~10%% more bits)")
    p.add_argument("--no-mean-context", action="store_true", help="mean residual tables without context")
    p.add_argument("--init", type=Path, default=None,
                   help="start from the weights of this checkpoint or model file (fine-tuning to another --lam; "
                        "a model file has no entropy-model parameters, so those start fresh); tensors whose "
                        "shapes differ (e.g. context tables) start fresh")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads per process")
    p.add_argument("--force", action="store_true", help="train into an existing OUT (without --resume)")
    p.set_defaults(handler=run_train)


def run_train(args) -> int:
    import torch

    from ...models.model_files import export_model
    from ...models.neural_collage import NeuralCodecConfig
    from ...training.checkpoints import load_checkpoint
    from ...training.loop import TrainOptions, train

    set_threads(args.threads)
    for flag, value in (("--lam", args.lam), ("--lr", args.lr), ("--minutes", args.minutes)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigurationError(f"{flag} must be a positive finite number, got {value}")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise ConfigurationError(f"--device must be cpu or cuda[:N], got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigurationError("--device cuda: no GPU is available")
    ckpt = args.out / "checkpoint.safetensors"
    if ckpt.exists() and not (args.resume or args.force):
        raise OutputExistsError(f"{ckpt} exists: pass --resume to continue it or --force to start over", ckpt)
    if args.force and not args.resume:
        for name in ("checkpoint.safetensors", "log.jsonl"):
            (args.out / name).unlink(missing_ok=True)
    config = NeuralCodecConfig(crop=args.crop, mean_step=args.mean_step, lam=args.lam, context=not args.no_context,
                               mean_context=not args.no_mean_context)
    options = TrainOptions(corpus=args.corpus, out=args.out, steps=args.steps, batch=args.batch, lr=args.lr,
                           seed=args.seed, resume=args.resume, device=args.device,
                           max_seconds=None if args.minutes is None else 60.0 * args.minutes)
    init = None
    if args.init is not None:
        if args.resume:
            raise ConfigurationError("--init and --resume exclude each other")
        init = _init_model(args.init)
    summary = train(options, config, init=init)
    if summary.get("rank", 0) == 0:
        checkpoint = load_checkpoint(ckpt)
        model, step = checkpoint.model, checkpoint.step
        export_model(model, args.out / "model.safetensors", {"lam": args.lam, "steps": step, "batch": args.batch})
        print(f"trained {step} steps in {summary['seconds']:.0f} s: {summary.get('bpp', 0):.3f} bpp (noisy estimate), "
              f"{summary.get('psnr', 0):.2f} dB on training crops; wrote {args.out / 'model.safetensors'}")
    import torch.distributed as dist

    if dist.is_initialized():  # under torchrun: leave together, then tear gloo/nccl down
        dist.barrier()
        dist.destroy_process_group()
    return 0


def _init_model(path):
    """The network of a training checkpoint or, failing that, of a shipped model file."""
    from ...errors import FormatError
    from ...models.model_files import load_model
    from ...training.checkpoints import load_checkpoint

    try:
        return load_checkpoint(path).model
    except FormatError as checkpoint_error:
        try:
            return load_model(path).model
        except FormatError:
            raise FormatError(f"--init {path}: neither a training checkpoint nor a model file "
                              f"({checkpoint_error})") from None
