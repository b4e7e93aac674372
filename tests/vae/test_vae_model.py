"""The hierarchical VAE: bounds, sampling, scale consistency of the collage decoder, bad input."""

import pytest
import torch
import torch.nn.functional as F

from neural_collages.errors import ConfigurationError, ImageError
from neural_collages.vae import HierarchicalVAE, VAEConfig
from vae_helpers import random_digits, tiny_vae


@pytest.mark.parametrize("decoder", ["collage", "pixel"])
def test_elbo_is_finite_with_a_nonnegative_kl_per_digit(decoder):
    model = tiny_vae(decoder=decoder)
    out = model(random_digits(), torch.Generator().manual_seed(0))
    assert torch.isfinite(out["nll"]).all() and torch.isfinite(out["kl"]).all()
    assert (out["kl"] >= 0).all() and (out["nll"] > 0).all()
    elbo = model.elbo(random_digits(), torch.Generator().manual_seed(0))
    assert torch.allclose(elbo, -(out["nll"] + out["kl"]))


@pytest.mark.parametrize("decoder", ["collage", "pixel"])
def test_importance_weighted_bound_is_at_least_the_elbo_on_average(decoder):
    model = tiny_vae(decoder=decoder)
    x = random_digits(32)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x, torch.Generator().manual_seed(s)) for s in range(8)]).mean()
        one = model.iwae(x, k=1, generator=torch.Generator().manual_seed(1)).mean()
        many = model.iwae(x, k=64, generator=torch.Generator().manual_seed(1), batch=512).mean()
    # E[L_1] is the ELBO; L_k grows with k (Burda et al. 2016, Theorem 1).
    assert abs(float(one - elbo)) < 0.05 * abs(float(elbo))
    assert float(many) > float(elbo) + 0.1


def test_iwae_does_not_depend_on_how_samples_are_batched():
    model = tiny_vae()
    x = random_digits(4)
    with torch.no_grad():
        a = model.iwae(x, k=8, generator=torch.Generator().manual_seed(5), batch=64)
        b = model.iwae(x, k=8, generator=torch.Generator().manual_seed(5), batch=3)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    # Different batching draws the noise in another order: equal in distribution, close here.
    assert abs(float(a.mean() - b.mean())) < 0.1 * abs(float(a.mean()))


def test_sampling_is_deterministic_with_a_seed_and_differs_between_seeds():
    model = tiny_vae()
    with torch.no_grad():
        a = model.sample(4, generator=torch.Generator().manual_seed(7))
        b = model.sample(4, generator=torch.Generator().manual_seed(7))
        c = model.sample(4, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (4, 1, 28, 28) and float(a.min()) >= 0 and float(a.max()) <= 1


@pytest.mark.parametrize("aux", ["global", "per_sample", "none"])
def test_a_40x_decode_average_pooled_is_the_1x_decode(aux):
    model = tiny_vae(aux=aux)
    with torch.no_grad():
        h, _ = model.run_topdown(None, 2, torch.Generator().manual_seed(0))
        z1 = model.head.decode(h, 1)
        z40 = model.head.decode(h, 40)
        big = model.sample(2, scale=40, generator=torch.Generator().manual_seed(0))
        small = model.sample(2, scale=1, generator=torch.Generator().manual_seed(0))
    assert z40.shape == (2, 1, 1120, 1120)
    assert torch.allclose(F.avg_pool2d(z40, 40), z1, atol=1e-5)
    # Same seed, same latents at every scale: the sample is the same digit, drawn larger.
    assert torch.allclose(F.avg_pool2d(model.head.logits(z40), 40), model.head.logits(z1), atol=1e-4)
    assert big.shape == (2, 1, 1120, 1120) and small.shape == (2, 1, 28, 28)


def test_the_collage_code_is_a_contraction_and_its_fixed_point_does_not_depend_on_the_start():
    model = tiny_vae()
    op = model.head.operator
    with torch.no_grad():
        h, _ = model.run_topdown(None, 3, torch.Generator().manual_seed(0))
        code, _, _ = model.head.codes(h * 50)  # large features: the parametrisation must still bound it
        assert float(op.lipschitz_bound(code).max()) <= model.config.s_max + 1e-6
        zero, _ = op.decode(code, tol=1e-7, max_steps=200)
        noise, _ = op.decode(code, init=torch.rand(3, 1, 28, 28) * 10 - 5, tol=1e-7, max_steps=200)
    assert torch.allclose(zero, noise, atol=1e-5)


def test_the_training_decode_reaches_the_fixed_point():
    # decode_steps Picard steps from zero leave at most s_max^steps of the fixed point's size.
    model = tiny_vae()
    with torch.no_grad():
        h, _ = model.run_topdown(None, 2, torch.Generator().manual_seed(0))
        code, _, _ = model.head.codes(h)
        exact, _ = model.head.operator.decode(code, tol=1e-8, max_steps=300)
        z = model.head.decode(h)
    bound = model.config.s_max ** model.config.decode_steps * float(exact.abs().max()) / (1 - model.config.s_max)
    assert float((z - exact).abs().max()) <= bound + 1e-6


def test_encode_and_reconstruct_use_the_posterior_means_deterministically():
    model = tiny_vae()
    x = random_digits(3)
    with torch.no_grad():
        latents = model.encode(x)
        assert len(latents) == sum(model.config.topdown_blocks)
        a, b = model.reconstruct(x, scale=3), model.reconstruct(x, scale=3)
    assert torch.equal(a, b) and a.shape == (3, 1, 84, 84)


def test_the_pixel_baseline_refuses_other_scales_and_bad_digits_are_refused():
    pixel = tiny_vae(decoder="pixel")
    with pytest.raises(ConfigurationError, match="scale 1"):
        pixel.sample(2, scale=2)
    model = tiny_vae()
    for bad in (torch.zeros(2, 1, 32, 32), torch.zeros(2, 28, 28), torch.full((1, 1, 28, 28), 2.0),
                torch.full((1, 1, 28, 28), float("nan"))):
        with pytest.raises(ImageError):
            model.elbo(bad)
    with pytest.raises(ConfigurationError):
        model.sample(2, temperature=-1.0)
    with pytest.raises(ConfigurationError):
        model.sample(2, scale=1000)


def test_both_decoders_share_the_encoder_and_top_down_network():
    collage, pixel = HierarchicalVAE(VAEConfig(decoder="collage")), HierarchicalVAE(VAEConfig(decoder="pixel"))
    shared = lambda m: {k: v.shape for k, v in m.state_dict().items() if not k.startswith("head.")}  # noqa: E731
    assert shared(collage) == shared(pixel)
    assert collage.num_parameters() - pixel.num_parameters() == (
        sum(p.numel() for p in collage.head.parameters()) - sum(p.numel() for p in pixel.head.parameters()))


@pytest.mark.parametrize("bad", [dict(width=10**6), dict(zdim=0), dict(decoder="mlp"), dict(aux="sometimes"),
                                 dict(encoder_blocks=(1, 1)), dict(topdown_blocks=(0, 0, 0)), dict(s_max=1.0),
                                 dict(domains=((3, 1),)), dict(width=64.0), dict(gain_init=float("inf")),
                                 dict(domains=(), aux="none")])
def test_bad_configurations_are_refused_with_a_clear_error(bad):
    with pytest.raises(ConfigurationError):
        VAEConfig(**bad)
    with pytest.raises(ConfigurationError):
        VAEConfig.from_dict({**VAEConfig().to_dict(), **bad, "unknown": 1} if "width" in bad else {"nope": 1})


def test_config_round_trips_through_a_dict():
    config = VAEConfig(decoder="pixel", zdim=4, domains=((4, 2),))
    assert VAEConfig.from_dict(config.to_dict()) == config
    import json
    assert VAEConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
