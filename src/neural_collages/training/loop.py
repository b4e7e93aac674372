"""The training loop of Neural Collage codec models: rate–distortion loss, schedule, resume, DDP.

``collage train`` drives :func:`train`. One process trains on the CPU (or a GPU when given);
the same code runs under ``torchrun`` as data-parallel training (gloo on CPU, nccl on GPU):
every rank draws its own crops and DDP averages the gradients, so ``N`` ranks with batch ``b``
each take the same steps as one process with batch ``N·b``.

Checkpoints (``checkpoints.py``) hold the model, the Adam state, the crop sampler's RNG state,
the step and the options, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..models.neural_collage import NeuralCodecConfig, NeuralCollageCodec
from .checkpoints import load_checkpoint, load_optimizer, save_checkpoint
from .corpus import load_corpus
from .sampler import CropSampler

__all__ = ["TrainOptions", "train", "rd_loss"]


@dataclass
class TrainOptions:
    corpus: Path
    out: Path
    steps: int = 6000
    batch: int = 32
    patch: int = 64
    lr: float = 1e-3
    seed: int = 0
    rate_warmup: float = 0.15  # fraction of steps over which the rate weight ramps 0 -> 1
    checkpoint_every: int = 500
    resume: bool = False
    device: str = "cpu"
    progress: bool = True
    max_seconds: float | None = None  # also stop (after the full schedule) when this much time has passed


def rd_loss(out: dict, lam: float, rate_weight: float = 1.0) -> torch.Tensor:
    """``rate_weight · bpp + lam · MSE`` (MSE on the 8-bit scale)."""
    return rate_weight * out["bpp"] + lam * out["mse"]


# ---------------------------------------------------------------------- the loop
def _save(path, model, opt, step, sampler, options, world, device) -> None:
    save_checkpoint(path, model.cpu() if device.type != "cpu" else model, opt, step,
                    sampler.state_dict()["generator"], {"lam": model.config.lam, "batch": options.batch, "world": world})
    model.to(device)


def _optimizer(model: NeuralCollageCodec, lr: float) -> torch.optim.Adam:
    # The entropy model's logits move 10x faster: its tables must sharpen from the broad initial
    # prior within the first few hundred steps, or every coefficient looks expensive.
    priors = [p for n, p in model.named_parameters() if "_prior." in n]
    rest = [p for n, p in model.named_parameters() if "_prior." not in n]
    return torch.optim.Adam([{"params": rest, "lr": lr, "base_lr": lr},
                             {"params": priors, "lr": 10 * lr, "base_lr": 10 * lr}])


def init_distributed(device_type: str) -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_initialized():
            # nccl only moves CUDA tensors: CPU training uses gloo even on a machine with a GPU.
            use_nccl = device_type == "cuda" and os.environ.get("COLLAGE_DDP_BACKEND") != "gloo"
            backend = "nccl" if use_nccl else "gloo"
            dist.init_process_group(backend)
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(options: TrainOptions, config: NeuralCodecConfig | None = None, images=None, log=print,
          init: NeuralCollageCodec | None = None) -> dict:
    """Train (or resume) a model; returns a summary of the final losses.

    ``images`` (a list of uint8 ``(3, H, W)`` tensors) overrides reading ``options.corpus``;
    ``init`` starts a new run from that model's weights (those of matching shapes).
    """
    rank, world = init_distributed(torch.device(options.device).type)
    device = torch.device(options.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    out = Path(options.out)
    ckpt_path = out / "checkpoint.safetensors"
    log_path = out / "log.jsonl"
    torch.manual_seed(options.seed)
    if images is None:
        images = load_corpus(Path(options.corpus))
    sampler = CropSampler(images, options.patch, seed=options.seed, rank=rank, world_size=world)
    start = 0
    if options.resume and ckpt_path.exists():
        checkpoint = load_checkpoint(ckpt_path)
        model, start = checkpoint.model, checkpoint.step
        opt = _optimizer(model, options.lr)
        load_optimizer(opt, checkpoint.tensors)
        sampler.load_state_dict({**sampler.state_dict(), "generator": checkpoint.tensors["sampler_state"]})
        if rank == 0:
            log(f"resumed from {ckpt_path} at step {start}")
    else:
        if options.resume and rank == 0:
            log(f"no checkpoint in {out}: starting from scratch")
        model = NeuralCollageCodec(config or NeuralCodecConfig())
        if init is not None:
            own = model.state_dict()
            taken = {k: v for k, v in init.state_dict().items() if k in own and own[k].shape == v.shape}
            model.load_state_dict(taken, strict=False)
            if rank == 0:
                log(f"initialised {len(taken)} of {len(own)} tensors from the given model")
        opt = _optimizer(model, options.lr)
    model.to(device)
    for state in opt.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and k != "step":
                state[k] = v.to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    lam = model.config.lam
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=options.steps, initial=start, disable=not options.progress or rank, desc="train", unit="step")
    ema = None
    t0 = time.perf_counter()
    step = start
    budget = options.max_seconds

    def progress_fraction() -> float:
        # The schedule follows whichever runs out first: steps or the wall-clock budget. Under
        # DDP rank 0's clock decides, so every rank stops at the same step.
        frac = step / options.steps
        if budget:
            elapsed = torch.tensor([time.perf_counter() - t0])
            if world > 1:
                dist.broadcast(elapsed, 0)
            frac = max(frac, float(elapsed) / budget)
        return min(frac, 1.0)

    while True:
        frac = progress_fraction()
        if frac >= 1.0:
            break
        # Rate weight ramps up (keeps the prior from collapsing coefficients before the encoder
        # learns to use them); learning rate decays by 10x over the last fifth (cosine).
        rate_weight = min(1.0, frac / options.rate_warmup) if options.rate_warmup > 0 else 1.0
        rate_weight = max(rate_weight, 0.01)
        tail = max(0.0, (frac - 0.8) / 0.2)
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * tail)))
        batch = sampler.sample(options.batch).to(device)
        result = net(batch)
        loss = rd_loss(result, lam, rate_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        values = {k: float(v.detach()) for k, v in result.items()}
        values["loss"] = float(loss.detach())
        ema = values if ema is None else {k: 0.98 * ema[k] + 0.02 * values[k] for k in values}
        step += 1
        bar.update(1)
        if rank == 0:
            psnr = 10 * math.log10(255.0**2 / max(ema["mse"], 1e-9))
            bar.set_postfix(bpp=f"{ema['bpp']:.3f}", psnr=f"{psnr:.2f}")
            if step % 50 == 0:
                with open(log_path, "a") as f:
                    f.write(json.dumps({"step": step, "seconds": round(time.perf_counter() - t0, 1),
                                        "lr": opt.param_groups[0]["lr"], "rate_weight": rate_weight,
                                        **{k: round(v, 5) for k, v in ema.items()}, "psnr": round(psnr, 3)}) + "\n")
            if step % options.checkpoint_every == 0:
                _save(ckpt_path, model, opt, step, sampler, options, world, device)
    bar.close()
    if rank == 0:
        _save(ckpt_path, model, opt, step, sampler, options, world, device)
    if world > 1:
        dist.barrier()  # every rank returns once the final checkpoint exists
    model.cpu()
    summary = {"steps": step, "seconds": round(time.perf_counter() - t0, 1), "rank": rank, **(ema or {})}
    if rank == 0 and ema is not None:
        summary["psnr"] = 10 * math.log10(255.0**2 / max(ema["mse"], 1e-9))
    return summary
