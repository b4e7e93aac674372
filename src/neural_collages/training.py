"""Training of Neural Collage codec models: rate–distortion loss, checkpoints, resume, DDP.

``collage train`` drives :func:`train`. One process trains on the CPU (or a GPU when given);
the same code runs under ``torchrun`` as data-parallel training (gloo on CPU, nccl on GPU):
every rank draws its own crops and DDP averages the gradients, so ``N`` ranks with batch ``b``
each take the same steps as one process with batch ``N·b``.

Checkpoints are safetensors files holding the model, the Adam state (flattened to tensors), the
crop sampler's RNG state and, in the metadata, the config, step and options — never pickles.
:func:`export_model` writes the small file the codec ships: the encoder in float16, the
auxiliary patches in float32 and the entropy model as integer tables.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import save_file

from .errors import ConfigurationError, FormatError
from .models.collage_codec import NeuralCodecConfig, NeuralCollageCodec

__all__ = ["TrainOptions", "train", "save_checkpoint", "load_checkpoint", "export_model", "load_model", "rd_loss"]

CHECKPOINT_KIND = "neural-collages/checkpoint"
MODEL_KIND = "neural-collages/model"
#: Largest model or checkpoint file read (a checkpoint with Adam state is ~9 MB; models ~2 MB).
MAX_FILE_BYTES = 512 * 2**20


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


# ---------------------------------------------------------------------- checkpoints
def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {}
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{i}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return tensors


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, i, key = name.split(".", 2)
            state.setdefault(int(i), {})[key] = value
    sd["state"] = state
    opt.load_state_dict(sd)


def _atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def save_checkpoint(path: Path, model: NeuralCollageCodec, opt, step: int, sampler_state: torch.Tensor,
                    options: dict) -> None:
    tensors = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    tensors.update({k: v.cpu() for k, v in _optimizer_tensors(opt).items()})
    tensors["sampler_state"] = sampler_state
    metadata = {"kind": CHECKPOINT_KIND, "config": json.dumps(model.config.to_dict()), "step": str(step),
                "options": json.dumps(options)}
    _atomic_save(tensors, path, metadata)


def _read_safetensors(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise FormatError(f"{path}: too large for a model or checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("kind") != kind:
                raise FormatError(f"{path}: not a {kind} file (kind {metadata.get('kind')!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise FormatError(f"{path}: unreadable safetensors file ({exc})") from None
    return tensors, metadata


def _config_from_metadata(path, metadata: dict) -> NeuralCodecConfig:
    try:
        return NeuralCodecConfig.from_dict(json.loads(metadata["config"]))
    except (KeyError, TypeError, json.JSONDecodeError, ConfigurationError) as exc:
        raise FormatError(f"{path}: bad model config ({exc})") from None


def _load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path, names=None) -> None:
    """Load ``state`` into ``model`` after checking names, shapes and finiteness (``FormatError``).

    ``names`` (default: all of the model's tensors) are the tensors the file must hold exactly;
    the others keep their values.
    """
    full = model.state_dict()
    expected = full if names is None else {k: full[k] for k in names}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise FormatError(f"{path}: tensors do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise FormatError(f"{path}: tensor {name} has shape {tuple(tensor.shape)}, "
                              f"the model needs {tuple(expected[name].shape)}")
        if not torch.isfinite(tensor.float()).all():
            raise FormatError(f"{path}: tensor {name} holds non-finite values")
    model.load_state_dict({**full, **{k: v.to(expected[k].dtype) for k, v in state.items()}})


def load_checkpoint(path: Path) -> tuple[NeuralCollageCodec, dict[str, torch.Tensor], int, dict]:
    tensors, metadata = _read_safetensors(path, CHECKPOINT_KIND)
    model = NeuralCollageCodec(_config_from_metadata(path, metadata))
    _load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    return model, tensors, int(metadata.get("step", 0)), json.loads(metadata.get("options", "{}"))


# ---------------------------------------------------------------------- shipped models
def export_model(model: NeuralCollageCodec, path: Path, info: dict | None = None) -> None:
    """Write the codec's model file: float16 encoder, float32 patches, integer entropy tables."""
    coef, mean = model.integer_tables()
    tensors = {}
    for name, value in model.state_dict().items():
        if name.startswith("encoder."):
            tensors[name] = value.detach().to(torch.float16)
        elif name.endswith("aux_patches"):
            tensors[name] = value.detach().float()
    tensors["tables.coef"] = torch.from_numpy(coef.astype(np.int32))
    tensors["tables.mean"] = torch.from_numpy(mean.astype(np.int32))
    metadata = {"kind": MODEL_KIND, "config": json.dumps(model.config.to_dict()), "info": json.dumps(info or {})}
    _atomic_save(tensors, Path(path), metadata)


def load_model(path: Path) -> tuple[NeuralCollageCodec, np.ndarray, np.ndarray, dict]:
    """Load a model file written by :func:`export_model`: the model (eval mode) and its integer tables."""
    tensors, metadata = _read_safetensors(path, MODEL_KIND)
    model = NeuralCollageCodec(_config_from_metadata(path, metadata))
    state = {k: v for k, v in tensors.items() if not k.startswith("tables.")}
    names = [k for k in model.state_dict() if k.startswith("encoder.") or k.endswith("aux_patches")]
    _load_state(model, state, path, names)
    coef = tensors.get("tables.coef")
    mean = tensors.get("tables.mean")
    K = model.coef_prior.num_symbols
    if coef is None or mean is None or tuple(coef.shape) != (model.coef_prior.mix_logit.shape[0], K) \
            or tuple(mean.shape) != (model.mean_prior.mix_logit.shape[0], model.mean_prior.num_symbols):
        raise FormatError(f"{path}: entropy tables missing or of the wrong shape")
    try:
        info = json.loads(metadata.get("info", "{}"))
    except json.JSONDecodeError:
        info = {}
    return model.eval(), coef.numpy().astype(np.int64), mean.numpy().astype(np.int64), info


def refit_mean_prior(model: NeuralCollageCodec, images, steps: int = 400, patch: int = 256, batch: int = 8,
                     seed: int = 0, lr: float = 1e-2) -> NeuralCollageCodec:
    """A copy of ``model`` with ``mean_context`` on, its mean tables fitted on ``images``.

    Range means are computed from the image, not by the network, so their entropy model can be
    (re)fitted alone: the encoder, patches and coefficient tables are kept; the mean prior starts
    from the old per-plane tables and minimises the mean residuals' bits on random patches.
    """
    from dataclasses import replace

    from .data import CropSampler

    config = replace(model.config, mean_context=True)
    new = NeuralCollageCodec(config)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("mean_prior.")}
    new.load_state_dict(state, strict=False)
    from .models.collage_codec import NUM_MEAN_CONTEXTS

    old = model.mean_prior
    per_plane = old.mix_logit.shape[0] // 3
    with torch.no_grad():
        for plane in range(3):
            for ctx in range(NUM_MEAN_CONTEXTS):
                src = plane * per_plane
                new.mean_prior.log_scales[plane * NUM_MEAN_CONTEXTS + ctx] = old.log_scales[src]
                new.mean_prior.mix_logit[plane * NUM_MEAN_CONTEXTS + ctx] = old.mix_logit[src]
    sampler = CropSampler(images, patch, seed=seed)
    opt = torch.optim.Adam(new.mean_prior.parameters(), lr=lr)
    for _ in range(steps):
        x = sampler.sample(batch)
        with torch.no_grad():
            _, luma, chroma = new.planes(x)
            grid_y, grid_c = new.mean_grids(luma, chroma)
        bits = new.mean_bits(grid_y + torch.rand_like(grid_y) - 0.5, grid_c + torch.rand_like(grid_c) - 0.5, noisy=True)
        loss = bits.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return new.eval()


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


def _distributed() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and os.environ.get("COLLAGE_DDP_BACKEND") != "gloo" else "gloo"
            dist.init_process_group(backend)
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(options: TrainOptions, config: NeuralCodecConfig | None = None, images=None, log=print,
          init: NeuralCollageCodec | None = None) -> dict:
    """Train (or resume) a model; returns a summary of the final losses.

    ``images`` (a list of uint8 ``(3, H, W)`` tensors) overrides reading ``options.corpus``;
    ``init`` starts a new run from that model's weights (those of matching shapes).
    """
    from tqdm import tqdm

    from .data import CropSampler, load_corpus

    rank, world = _distributed()
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
        model, tensors, start, _ = load_checkpoint(ckpt_path)
        opt = _optimizer(model, options.lr)
        _load_optimizer(opt, tensors)
        sampler.load_state_dict({**sampler.state_dict(), "generator": tensors["sampler_state"]})
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
