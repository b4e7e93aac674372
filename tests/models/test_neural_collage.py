"""The Neural Collage network: config validation, factorized prior, crop encoder, training forward."""

import dataclasses
import math

import pytest
import torch

from neural_collages.errors import ConfigurationError
from neural_collages.models.neural_collage import (
    RANGE,
    CropEncoder,
    FactorizedPrior,
    NeuralCodecConfig,
    NeuralCollageCodec,
    dct_ac_basis,
)
from neural_collages.models.neural_collage.prior import PROB_FLOOR

# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(crop=0),
        dict(crop=8),
        dict(crop=24),
        dict(crop=-16),
        dict(coef_bound=0),
        dict(coef_bound=1001),
        dict(mean_step=0.2),
        dict(mean_step=65),
        dict(s_max=0.0),
        dict(s_max=1.0),
        dict(s_max=-0.5),
        dict(encoder_deadzone=0.5),
        dict(encoder_deadzone=-0.1),
        dict(aux_count=64),
        dict(aux_count=-1),
        dict(domain_steps=0),
        dict(domain_steps=65),
        dict(width=0),
        dict(blocks=-1),
        dict(train_decode_steps=0),
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigurationError):
        NeuralCodecConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(crop=16),
        dict(crop=64, coef_bound=1, mean_step=0.25, s_max=0.01, encoder_deadzone=0.0, aux_count=0, domain_steps=1),
        dict(coef_bound=1000, mean_step=64, s_max=0.999, encoder_deadzone=0.49, aux_count=63, domain_steps=64),
        dict(width=1, blocks=0, train_decode_steps=1),
    ],
)
def test_config_accepts_the_bounds(kwargs):
    NeuralCodecConfig(**kwargs)


def test_config_to_dict_from_dict_round_trip():
    config = NeuralCodecConfig(crop=48, width=24, blocks=3, coef_bound=31, aux_count=10, mean_step=4.0,
                               s_max=0.8, domain_steps=5, search_hint=True, context=True, mean_context=True,
                               encoder_deadzone=0.2, chroma_subsampling=False, lam=0.01)
    data = config.to_dict()
    assert data["crop"] == 48 and data["search_hint"] is True
    assert set(data) == {f.name for f in dataclasses.fields(NeuralCodecConfig)}
    assert NeuralCodecConfig.from_dict(data) == config
    assert NeuralCodecConfig.from_dict({}) == NeuralCodecConfig()
    assert NeuralCodecConfig.from_dict(NeuralCodecConfig().to_dict()) == NeuralCodecConfig()


def test_config_from_dict_rejects_unknown_keys_and_validates():
    data = NeuralCodecConfig().to_dict()
    with pytest.raises(ConfigurationError, match="unknown"):
        NeuralCodecConfig.from_dict({**data, "depth": 3})
    with pytest.raises(ConfigurationError):
        NeuralCodecConfig.from_dict({**data, "s_max": 1.5})


def test_config_derived_values():
    config = NeuralCodecConfig(mean_step=2.0, s_max=0.9, domain_steps=6)
    assert config.mean_levels == 128  # round(255 / 2) = round(127.5), half to even
    assert config.domain_unit == pytest.approx(0.15)
    assert NeuralCodecConfig(mean_step=1.0).mean_levels == 255
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.crop = 64


# ------------------------------------------------------------------ prior


def random_prior(tables=4, bound=7, seed=0):
    torch.manual_seed(seed)
    prior = FactorizedPrior(tables, bound)
    with torch.no_grad():
        prior.log_scales.add_(torch.randn_like(prior.log_scales) * 1.5)
        prior.mix_logit.add_(torch.randn_like(prior.mix_logit) * 2)
    return prior


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("bound", [1, 7, 63])
def test_probabilities_are_normalised_and_floored(seed, bound):
    prior = random_prior(bound=bound, seed=seed)
    p = prior.probabilities()
    assert p.shape == (4, 2 * bound + 1) and prior.num_symbols == 2 * bound + 1
    torch.testing.assert_close(p.sum(-1), torch.ones(4), atol=1e-5, rtol=0)
    assert bool((p >= PROB_FLOOR * (1 - 1e-6)).all())
    # Zero-mean and symmetric, and non-increasing in |k| away from the end symbols (which hold
    # the folded tails and may be larger).
    torch.testing.assert_close(p, p.flip(-1), atol=1e-6, rtol=0)
    inner = p[:, bound:-1]  # k = 0 … bound − 1
    assert bool((inner[:, 1:] <= inner[:, :-1] + 1e-7).all())


def test_a_near_deterministic_table_hits_the_floor():
    prior = FactorizedPrior(1, 20)
    with torch.no_grad():
        prior.log_scales.fill_(math.log(0.05))
    p = prior.probabilities()
    assert float(p.detach().min()) == pytest.approx(PROB_FLOOR, rel=1e-3)
    torch.testing.assert_close(p.sum(-1), torch.ones(1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_bits_of_integers_match_minus_log2_probabilities(seed):
    prior = random_prior(seed=seed)
    bound = prior.bound
    p = prior.probabilities()
    symbols = torch.arange(-bound, bound + 1).repeat(4, 1)  # (T, K)
    table = torch.arange(4).unsqueeze(1)
    want = -torch.log2(p)
    bits = prior.bits(symbols.float(), table)
    torch.testing.assert_close(bits, want, atol=1e-4, rtol=1e-4)
    exact = prior.integer_bits(symbols, table)
    assert torch.equal(exact, want)


def test_noisy_bits_are_differentiable_and_smooth():
    prior = random_prior()
    values = torch.linspace(-9, 9, 101, requires_grad=True)
    bits = prior.bits(values, torch.tensor([2]))
    assert bool(torch.isfinite(bits).all()) and bool((bits > 0).all())
    bits.sum().backward()
    assert prior.log_scales.grad is not None and prior.log_scales.grad.abs().sum() > 0
    assert prior.mix_logit.grad is not None and torch.isfinite(values.grad).all()


# ------------------------------------------------------------------ DCT basis


def test_dct_ac_basis_is_orthonormal_and_has_no_dc():
    atoms = dct_ac_basis(8).double()
    assert atoms.shape == (63, 1, 8, 8) and atoms.dtype == torch.float64
    flat = atoms.reshape(63, 64)
    torch.testing.assert_close(flat @ flat.T, torch.eye(63, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat.sum(-1), torch.zeros(63, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_dct_ac_basis_prefixes_and_frequency_order(n):
    full = dct_ac_basis(n)
    assert dct_ac_basis(n).dtype == torch.float32
    for count in (0, 1, 3, n * n - 1):
        assert torch.equal(dct_ac_basis(n, count), full[:count])
    # The first two atoms are the lowest frequencies: one varies along columns only, one along rows only.
    first, second = full[0, 0], full[1, 0]
    torch.testing.assert_close(first, first[:1].expand(n, n))  # constant down each column
    torch.testing.assert_close(second, second[:, :1].expand(n, n))  # constant along each row
    # Frequencies u + v never decrease along the order (count sign changes along rows and columns).
    def freq(atom):
        row = (atom[0, 1:] * atom[0, :-1] < 0).sum()
        col = (atom[1:, 0] * atom[:-1, 0] < 0).sum()
        return int(row + col)

    freqs = [freq(a[0]) for a in full]
    assert freqs == sorted(freqs)


# ------------------------------------------------------------------ crop encoder


def test_crop_encoder_output_shapes():
    torch.manual_seed(0)
    enc = CropEncoder(width=16, blocks=1, luma_candidates=11, chroma_candidates=7)
    crops = torch.rand(3, 3, 32, 32)
    luma, chroma = enc(crops)
    r = 32 // RANGE
    assert luma.shape == (3, 1, r * r, 11)
    assert chroma.shape == (3, 2, (r // 2) ** 2, 7)


def test_crop_encoder_shapes_with_hints_and_full_chroma():
    torch.manual_seed(0)
    enc = CropEncoder(width=8, blocks=0, luma_candidates=5, chroma_candidates=4, hint_channels=2, chroma_factor=1)
    crops = torch.rand(2, 3, 48, 48)
    r = 48 // RANGE
    luma, chroma = enc(crops, torch.rand(2, 2, r, r), torch.rand(2, 4, r, r))
    assert luma.shape == (2, 1, r * r, 5)
    assert chroma.shape == (2, 2, r * r, 4)


def test_crop_encoder_is_local_to_each_range_without_residual_blocks():
    """With no 3x3 blocks each range's weights depend on its own 8x8 pixels only (embed + 1x1 head)."""
    torch.manual_seed(1)
    enc = CropEncoder(width=8, blocks=0, luma_candidates=3, chroma_candidates=2)
    crops = torch.rand(1, 3, 32, 32)
    changed = crops.clone()
    changed[..., :8, :8] += 0.3  # range 0
    with torch.no_grad():
        luma, _ = enc(crops)
        luma2, _ = enc(changed)
    diff = (luma2 - luma).abs().sum(-1)[0, 0]
    assert float(diff[0]) > 0
    assert torch.equal(diff[1:], torch.zeros(15))


# ------------------------------------------------------------------ the codec model


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return NeuralCollageCodec(NeuralCodecConfig(crop=32, width=16, blocks=1, train_decode_steps=4))


def test_model_operators_match_the_config(tiny_model):
    m = tiny_model
    assert m.luma_op.size == (32, 32) and m.luma_op.channels == 1 and m.luma_op.centred
    assert m.chroma_op.size == (16, 16) and m.chroma_op.channels == 2
    assert m.luma_op.num_aux == m.chroma_op.num_aux == 63
    # The aux patches start as scaled DCT atoms.
    torch.testing.assert_close(m.luma_op.aux_patches.detach(), dct_ac_basis(8) * 0.04)


def test_forward_returns_finite_rate_and_distortion_and_trains_the_encoder(tiny_model):
    torch.manual_seed(1)
    rgb = torch.rand(2, 3, 32, 32)
    tiny_model.zero_grad()
    out = tiny_model(rgb)
    assert {"bpp", "mse", "mean_bpp"} <= set(out)
    values = {key: out[key].detach() for key in ("bpp", "mse", "mean_bpp")}
    for key, value in values.items():
        assert value.dim() == 0 and bool(torch.isfinite(value)), key
    assert float(values["bpp"]) > float(values["mean_bpp"]) > 0
    assert float(values["mse"]) > 0
    (out["bpp"] + tiny_model.config.lam * out["mse"]).backward()
    enc = tiny_model.encoder
    for name, param in [("embed", enc.embed.weight), ("luma_head", enc.luma_head.weight),
                        ("chroma_head", enc.chroma_head.weight), ("block", enc.blocks[0].conv1.weight)]:
        assert param.grad is not None, name
        assert bool(torch.isfinite(param.grad).all()), name
        assert float(param.grad.abs().sum()) > 0, name
    assert float(tiny_model.coef_prior.log_scales.grad.abs().sum()) > 0
    assert float(tiny_model.mean_prior.log_scales.grad.abs().sum()) > 0


def test_forward_rejects_images_that_are_not_multiples_of_the_crop(tiny_model):
    with pytest.raises(ConfigurationError):
        tiny_model(torch.rand(1, 3, 32, 40))


def test_planes_and_mean_grids_shapes(tiny_model):
    rgb = torch.rand(2, 3, 64, 32)
    ycc, luma, chroma = tiny_model.planes(rgb)
    assert ycc.shape == (2, 3, 64, 32) and luma.shape == (2, 1, 64, 32) and chroma.shape == (2, 2, 32, 16)
    gy, gc = tiny_model.mean_grids(luma, chroma)
    assert gy.shape == (2, 1, 8, 4) and gc.shape == (2, 2, 4, 2)
    grey = torch.full((1, 3, 32, 32), 0.5)
    _, luma, chroma = tiny_model.planes(grey)
    gy, gc = tiny_model.mean_grids(luma, chroma)
    torch.testing.assert_close(gy, torch.full_like(gy, 127.5 / 2.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(gc, torch.full_like(gc, 64.0), atol=1e-4, rtol=0)


def test_quantise_rounds_clamps_and_applies_the_dead_zone(tiny_model):
    b = tiny_model.config.coef_bound
    w = torch.tensor([0.4, 0.6, -0.6, 1.69, -1.71, 100.0, -100.0])
    assert tiny_model.quantise(w).tolist() == [0, 1, -1, 2, -2, b, -b]
    assert tiny_model.quantise(w, deadzone=0.2).tolist() == [0, 0, 0, 1, -2, b, -b]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width": 1_000_000}, "width must lie"),
        ({"crop": 65536}, "crop must lie"),
        ({"blocks": 100_000}, "blocks must lie"),
        ({"aux_count": 1.5}, "aux_count must be an integer"),
        ({"lam": float("nan")}, "lam must be a finite number"),
        ({"context": 1}, "context must be true or false"),
    ],
)
def test_config_types_and_sizes_are_checked_before_anything_is_built(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        NeuralCodecConfig(**kwargs)
