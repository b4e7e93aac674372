"""Training of (Collage) VAEs: the VDVAE recipe at MNIST size, resumable, data-parallel.

Each step draws a batch of training digits with its own generator, binarises them afresh
(dynamic binarisation) and takes one Adam step on the negative ELBO per pixel, with the VDVAE
safeguards: the gradient norm is clipped, and a step whose norm is not finite or exceeds
``skip_threshold`` is skipped (counted in the log). An exponential moving average of the weights
is what gets evaluated and exported. The learning rate warms up linearly, then stays constant,
so a run can be continued (``resume``) with a new time budget without a schedule to restart.

Checkpoints (safetensors, kind ``neural-collages/vae-checkpoint``) hold the model, its EMA, the
Adam state, the data generator's state, the step and the options: a resumed run takes the same
next steps as one that was never interrupted. Under ``torchrun`` every rank draws its own batches
(seed + rank) and DDP averages the gradients.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..errors import FormatError
from ..models.model_files import load_state, read_safetensors, write_safetensors
from ..vae import HierarchicalVAE, VAEConfig
from ..vae.files import config_from_metadata, save_vae
from ..vae.model import mean_bounds
from ..vae.mnist import binarise, binarise_fixed, load_digits
from .checkpoints import load_optimizer, metadata_count, metadata_options, optimizer_tensors
from .loop import init_distributed

CHECKPOINT_KIND = "neural-collages/vae-checkpoint"
CHECKPOINT_FILE = "checkpoint.safetensors"


@dataclass
class VAETrainOptions:
    data: Path | None
    out: Path
    minutes: float | None = None
    steps: int | None = None  # stop after this many steps in total (None: only the time budget)
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 200
    ema: float = 0.999
    grad_clip: float = 200.0
    skip_threshold: float = 1000.0
    seed: int = 0
    checkpoint_every: int = 500
    eval_digits: int = 1000  # test digits whose ELBO (EMA weights) is logged at the end
    resume: bool = False
    device: str = "cpu"
    progress: bool = True


@dataclass
class VAECheckpoint:
    model: HierarchicalVAE
    ema: HierarchicalVAE
    tensors: dict
    step: int
    skipped: int
    options: dict
    seconds: int  # training time of every run so far


def save_vae_checkpoint(path: Path, model, ema, opt, step: int, skipped: int, generator_state, options: dict,
                        seconds: float = 0.0):
    tensors = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu() for k, v in ema.state_dict().items()})
    tensors.update({k: v.cpu() for k, v in optimizer_tensors(opt).items()})
    tensors["generator_state"] = generator_state
    metadata = {"kind": CHECKPOINT_KIND, "config": json.dumps(model.config.to_dict()), "step": str(step),
                "skipped": str(skipped), "seconds": str(int(seconds)), "options": json.dumps(options)}
    write_safetensors(tensors, Path(path), metadata)


def load_vae_checkpoint(path: Path) -> VAECheckpoint:
    """A checkpoint written by :func:`save_vae_checkpoint`, checked as hostile input."""
    tensors, metadata = read_safetensors(path, CHECKPOINT_KIND)
    config = config_from_metadata(path, metadata)
    model, ema = HierarchicalVAE(config), HierarchicalVAE(config)
    load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    load_state(ema, {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, path)
    counts = [metadata_count(path, metadata, key) for key in ("step", "skipped", "seconds")]
    options = metadata_options(path, metadata)
    state = tensors.get("generator_state")
    if state is None or state.dtype != torch.uint8 or state.dim() != 1 or state.numel() > 100_000:
        raise FormatError(f"{path}: missing or malformed generator_state")
    return VAECheckpoint(model, ema, tensors, counts[0], counts[1], options, counts[2])


@torch.no_grad()
def _update_ema(ema: HierarchicalVAE, model: HierarchicalVAE, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def mean_negative_elbo(model: HierarchicalVAE, digits: torch.Tensor, seed: int = 0, batch: int = 500) -> float:
    """Mean negative ELBO (nats) of ``model`` on binary ``digits`` (one posterior sample each)."""
    return mean_bounds(model, digits, generator=torch.Generator().manual_seed(seed), chunk=batch)["elbo_nats"]


def train_vae(options: VAETrainOptions, config: VAEConfig | None = None, digits: torch.Tensor | None = None,
              log=print) -> dict:
    """Train (or resume) a VAE in ``options.out``; returns a summary. ``digits`` (uint8
    ``(N, 1, 28, 28)``) overrides reading the training split of ``options.data``."""
    rank, world = init_distributed(torch.device(options.device).type)
    device = torch.device(options.device)
    if device.type == "cuda" and world > 1:
        import os

        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    out = Path(options.out)
    ckpt_path, log_path = out / CHECKPOINT_FILE, out / "log.jsonl"
    if digits is None:
        digits = load_digits(options.data, "train")
    generator = torch.Generator().manual_seed(options.seed * 1000 + rank)
    start = skipped = earlier_seconds = 0
    if options.resume and ckpt_path.exists():
        ck = load_vae_checkpoint(ckpt_path)
        model, ema, start, skipped, earlier_seconds = ck.model, ck.ema, ck.step, ck.skipped, ck.seconds
        opt = torch.optim.Adam(model.parameters(), lr=options.lr)
        load_optimizer(opt, ck.tensors)
        generator.set_state(ck.tensors["generator_state"])
        if rank == 0:
            log(f"resumed from {ckpt_path} at step {start}")
    else:
        if options.resume and rank == 0:
            log(f"no checkpoint in {out}: starting from scratch")
        torch.manual_seed(options.seed)
        model = HierarchicalVAE(config or VAEConfig())
        ema = HierarchicalVAE(model.config)
        ema.load_state_dict(model.state_dict())
        opt = torch.optim.Adam(model.parameters(), lr=options.lr)
    model.to(device)
    ema.to(device)
    ema.eval()
    for state in opt.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and k != "step":
                state[k] = v.to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    run_options = {"batch": options.batch, "lr": options.lr, "ema": options.ema, "world": world, "seed": options.seed}
    budget = None if options.minutes is None else 60.0 * options.minutes
    bar = tqdm(total=options.steps, initial=start, disable=not options.progress or rank > 0, desc="train vae",
               unit="step")
    t0 = time.perf_counter()
    step, smooth = start, None

    def finished() -> bool:
        done = torch.tensor([float(options.steps is not None and step >= options.steps)])
        if budget is not None and time.perf_counter() - t0 >= budget:
            done.fill_(1.0)
        if world > 1:
            dist.broadcast(done, 0)  # rank 0's clock decides: every rank stops at the same step
        return bool(done)

    def save():
        save_vae_checkpoint(ckpt_path, model.cpu(), ema.cpu(), opt, step, skipped, generator.get_state(), run_options,
                            earlier_seconds + time.perf_counter() - t0)
        model.to(device)
        ema.to(device)

    while not finished():
        for group in opt.param_groups:
            group["lr"] = options.lr * min(1.0, (step + 1) / max(1, options.warmup))
        index = torch.randint(digits.shape[0], (options.batch,), generator=generator)
        x = binarise(digits[index], generator).to(device)
        result = net(x, generator if device.type == "cpu" else None)
        opt.zero_grad(set_to_none=True)
        result["loss"].backward()
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip))
        if math.isfinite(norm) and norm < options.skip_threshold:
            opt.step()
            _update_ema(ema, model, options.ema)
        else:
            skipped += 1
        step += 1
        values = {"nelbo": float((result["nll"] + result["kl"]).detach().mean()), "nll": float(result["nll"].detach().mean()),
                  "kl": float(result["kl"].detach().mean()), "grad_norm": norm}
        smooth = values if smooth is None else {k: 0.98 * smooth[k] + 0.02 * v for k, v in values.items()}
        bar.update(1)
        if rank == 0:
            bar.set_postfix(nelbo=f"{smooth['nelbo']:.2f}", kl=f"{smooth['kl']:.1f}")
            if step % 50 == 0:
                with open(log_path, "a") as f:
                    f.write(json.dumps({"step": step, "seconds": round(time.perf_counter() - t0, 1), "skipped": skipped,
                                        **{k: round(v, 4) for k, v in smooth.items()}}) + "\n")
            if step % options.checkpoint_every == 0:
                save()
    bar.close()
    summary = {"steps": step, "seconds": round(time.perf_counter() - t0, 1), "skipped": skipped, "rank": rank,
               **(smooth or {})}
    if rank == 0:
        save()
        if options.eval_digits:
            test = binarise_fixed(load_digits(options.data, "test")[: options.eval_digits])
            summary["test_nelbo_ema"] = mean_negative_elbo(ema.cpu(), test)
            with open(log_path, "a") as f:
                f.write(json.dumps({"step": step, "test_nelbo_ema": round(summary["test_nelbo_ema"], 3),
                                    "test_digits": options.eval_digits}) + "\n")
        save_vae(ema.cpu(), out / "model.safetensors",
                 {"steps": step, "batch": options.batch * world, "train_seconds": int(earlier_seconds + summary["seconds"]),
                  "device": device.type, "threads": torch.get_num_threads()})
    if world > 1:
        dist.barrier()
    return summary
