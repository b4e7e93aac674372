import os
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp

from neural_collages.apps.cli import main
from neural_collages.errors import FormatError
from neural_collages.models import NeuralCodecConfig, NeuralCollageCodec
from neural_collages.training.checkpoints import load_checkpoint
from neural_collages.training.loop import TrainOptions, rd_loss, train

TINY = dict(width=16, blocks=1, train_decode_steps=3, lam=0.01)


def _images(n=3, size=96, seed=0):
    """Smooth synthetic photos: low-frequency colour fields plus an edge (compressible, not constant)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        low = torch.rand(1, 3, 4, 4, generator=g)
        img = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)[0]
        img[:, size // 3:, : size // 2] *= 0.5
        out.append((img.clamp(0, 1) * 255).round().to(torch.uint8))
    return out


def _fixed_loss(model, batch):
    torch.manual_seed(123)
    with torch.no_grad():
        return float(rd_loss(model(batch), model.config.lam))


def test_a_tiny_training_run_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    images = _images()
    batch = torch.stack([im[:, :64, :64] for im in images]).float() / 255
    before = _fixed_loss(NeuralCollageCodec(NeuralCodecConfig(**TINY)), batch)
    opts = TrainOptions(corpus=tmp_path, out=tmp_path / "run", steps=60, batch=4, lr=3e-3, progress=False,
                        checkpoint_every=30)
    summary = train(opts, NeuralCodecConfig(**TINY), images=images)
    assert summary["steps"] == 60
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    model, step = checkpoint.model, checkpoint.step
    assert step == 60
    after = _fixed_loss(model, batch)
    assert after < 0.8 * before, (before, after)
    assert (tmp_path / "run" / "log.jsonl").read_text().count("\n") == 1  # one line per 50 steps


def test_resume_continues_from_the_checkpoint(tmp_path):
    images = _images()
    opts = TrainOptions(corpus=tmp_path, out=tmp_path / "run", steps=20, batch=2, progress=False, checkpoint_every=10)
    train(opts, NeuralCodecConfig(**TINY), images=images)
    opts.steps, opts.resume = 30, True
    messages = []
    summary = train(opts, images=images, log=messages.append)
    assert summary["steps"] == 30 and "step 20" in messages[0]
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    model, tensors, step = checkpoint.model, checkpoint.tensors, checkpoint.step
    assert step == 30
    assert int(tensors["optim.0.step"]) == 30  # the Adam state travelled through the checkpoint


def test_checkpoints_are_validated(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(FormatError):
        load_checkpoint(bad)


def test_cli_train_writes_a_model_and_refuses_to_clobber(tmp_path, monkeypatch, capsys):
    import neural_collages.training.loop as loop

    monkeypatch.setattr(loop, "load_corpus", lambda path: _images())
    out = tmp_path / "run"
    args = ["train", str(tmp_path), str(out), "--steps", "4", "--batch", "2", "--lam", "0.01"]
    assert main(args) == 0
    assert (out / "model.safetensors").exists()
    assert main(args) == 2  # a checkpoint exists: needs --resume or --force
    assert "checkpoint" in capsys.readouterr().err
    assert main(args + ["--resume", "--steps", "6"]) == 0
    assert load_checkpoint(out / "checkpoint.safetensors").step == 6


def test_cli_train_fine_tunes_from_a_model_file_or_a_checkpoint(tmp_path, monkeypatch, capsys):
    import neural_collages.training.loop as loop
    from neural_collages.models.model_files import load_model

    monkeypatch.setattr(loop, "load_corpus", lambda path: _images())
    base = ["--steps", "3", "--batch", "2", "--lam", "0.02"]
    assert main(["train", str(tmp_path), str(tmp_path / "a")] + base) == 0
    first = load_model(tmp_path / "a" / "model.safetensors").model
    for init in (tmp_path / "a" / "model.safetensors", tmp_path / "a" / "checkpoint.safetensors"):
        out = tmp_path / f"from-{init.stem}"
        assert main(["train", str(tmp_path), str(out), "--init", str(init)] + base) == 0
        tuned = load_checkpoint(out / "checkpoint.safetensors").model
        assert tuned.config.lam == 0.02
        # Three small steps move the encoder only a little away from where it started.
        w0, w1 = first.encoder.luma_head.weight, tuned.encoder.luma_head.weight
        assert (w1 - w0).abs().mean() < 0.5 * w0.abs().mean()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    capsys.readouterr()
    assert main(["train", str(tmp_path), str(tmp_path / "c"), "--init", str(bad)] + base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--init" in err[0] and "neither a training checkpoint nor a model file" in err[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leave(dist):
    """End a spawned rank: both ranks meet, then exit without running C++ static destructors.

    gloo's background threads occasionally abort a process that tears down normally at
    interpreter exit ("terminate called without an active exception", ~1 run in 10 here);
    ``os._exit`` after the barrier skips that teardown, the results are already on disk.
    """
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _ddp_worker(rank, world, port, batch, path):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = NeuralCollageCodec(NeuralCodecConfig(**TINY))
    net = torch.nn.parallel.DistributedDataParallel(model)
    torch.manual_seed(100 + rank)  # the quantisation noise of this half
    loss = rd_loss(net(batch[rank::world]), model.config.lam)
    loss.backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, path)
    _leave(dist)


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_single_process_gradients(tmp_path):
    images = _images(4)
    batch = torch.stack([im[:, :64, :64] for im in images]).float() / 255
    path = tmp_path / "ddp_grads.pt"
    mp.spawn(_ddp_worker, args=(2, _free_port(), batch, str(path)), nprocs=2, join=True)
    ddp = torch.load(path)
    torch.manual_seed(0)
    model = NeuralCollageCodec(NeuralCodecConfig(**TINY))
    total = None
    for rank in range(2):
        model.zero_grad()
        torch.manual_seed(100 + rank)
        rd_loss(model(batch[rank::2]), model.config.lam).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        total = grads if total is None else {n: total[n] + grads[n] for n in grads}
    for name, grad in total.items():
        torch.testing.assert_close(ddp[name], grad / 2, atol=1e-5, rtol=1e-4, msg=name)


def _train_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    opts = TrainOptions(corpus=out, out=out / "run", steps=3, batch=2, progress=False)
    summary = train(opts, NeuralCodecConfig(**TINY), images=_images())
    torch.save(summary["steps"], out / f"steps{rank}.pt")
    import torch.distributed as dist

    _leave(dist)


@pytest.mark.slow
def test_training_script_runs_data_parallel_over_gloo(tmp_path):
    # What `torchrun --nproc-per-node 2 collage train ...` does: every rank runs train().
    mp.spawn(_train_worker, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    assert [torch.load(tmp_path / f"steps{r}.pt") for r in range(2)] == [3, 3]
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    model, step, options = checkpoint.model, checkpoint.step, checkpoint.options
    assert step == 3 and options["world"] == 2


def test_refit_mean_prior_adds_contexts_and_keeps_the_rest():
    from neural_collages.training.mean_prior import refit_mean_prior

    torch.manual_seed(0)
    model = NeuralCollageCodec(NeuralCodecConfig(**TINY))
    new = refit_mean_prior(model, _images(), steps=30, patch=64, batch=2)
    assert new.config.mean_context and not model.config.mean_context
    assert new.mean_prior.mix_logit.shape[0] == 3 * 5
    for name, tensor in model.state_dict().items():
        if not name.startswith("mean_prior."):
            assert torch.equal(tensor, new.state_dict()[name]), name
    batch = torch.stack([im[:, :64, :64] for im in _images()]).float() / 255
    with torch.no_grad():
        bits = [float(m.mean_bits(*m.mean_grids(*m.planes(batch)[1:]), noisy=False).mean()) for m in (model, new)]
    assert bits[1] < bits[0]


def test_init_from_another_model_takes_matching_tensors(tmp_path):
    images = _images()
    torch.manual_seed(0)
    base = NeuralCollageCodec(NeuralCodecConfig(**TINY))
    opts = TrainOptions(corpus=tmp_path, out=tmp_path / "run", steps=1, batch=2, progress=False, lr=1e-12)
    messages = []
    train(opts, NeuralCodecConfig(**dict(TINY, mean_context=True)), images=images, log=messages.append, init=base)
    model = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors").model
    assert "initialised" in messages[0]
    torch.testing.assert_close(model.encoder.embed.weight, base.encoder.embed.weight, atol=1e-6, rtol=0)
    assert model.mean_prior.mix_logit.shape[0] == 15  # the context tables started fresh
