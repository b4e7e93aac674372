"""The neural encoder codes an image with the named model and each other family's model nearest in
λ, and keeps the code of least rate–distortion cost; the file names the model that decodes it."""

import math

import pytest

from neural_collages.assets import sample_image_path
from neural_collages.codecs import compress, decompress, neural, quality_levels
from neural_collages.codecs.neural import codec as neural_codec
from neural_collages.coding.container import unpack
from neural_collages.imaging.io import load_image
from neural_collages.imaging.metrics import psnr


@pytest.fixture(scope="module")
def photo():
    return load_image(sample_image_path())[:, 96:192, 128:256].contiguous()


def _lam(name):
    return neural.load_named_model(name).model.config.lam


@pytest.mark.parametrize("family,other", [("photo", "aerial"), ("aerial", "photo")])
def test_candidates_are_the_named_model_then_the_other_familys_nearest_in_lambda(family, other):
    matched = 0
    for q in quality_levels("neural", family):
        names = neural_codec.candidate_models(family, q)
        assert names[0] == f"{family}-q{q}"
        gaps = {p: abs(math.log(_lam(f"{other}-q{p}") / _lam(names[0]))) for p in quality_levels("neural", other)}
        nearest = min(gaps, key=gaps.get)
        if gaps[nearest] <= math.log(neural_codec.LAMBDA_MATCH):
            assert names[1:] == [f"{other}-q{nearest}"]
            matched += 1
        else:
            assert names[1:] == []  # no model of the other family made for about this trade-off
    assert matched >= 1


@pytest.mark.parametrize("family,quality", [("photo", 3), ("aerial", 1)])
def test_the_kept_code_costs_no_more_than_any_candidate(photo, family, quality):
    data = compress(photo, "neural", quality, model=family)
    names = neural_codec.candidate_models(family, quality)
    lam, samples = _lam(names[0]), photo.numel()
    costs, filtered = {}, {}
    for name in names:
        for deblock, table in ((False, costs), (True, filtered)):
            c = neural_codec.code_candidate(photo, neural.load_named_model(name), deblock)
            table[name] = c.bits / (samples / 3) + lam * c.squared_error / samples
    kept = unpack(data)[0].params["model"]
    assert kept in names and costs[kept] == min(costs.values())  # compared unfiltered
    assert filtered[kept] <= costs[kept]  # then filtered, never for worse
    # Naming the kept model's family exactly writes the same file when that is the named model.
    exact = compress(photo, "neural", quality, model=kept.split("-")[0], exact_model=True)
    if kept == names[0]:
        assert exact == data


def test_exact_model_keeps_the_named_model_and_choice_is_never_costlier(photo):
    exact = compress(photo, "neural", 1, model="aerial", exact_model=True)
    chosen = compress(photo, "neural", 1, model="aerial")
    assert unpack(exact)[0].params["model"] == "aerial-q1"
    lam, pixels = _lam("aerial-q1"), photo.shape[1] * photo.shape[2]

    def cost(data):
        mse = float(((decompress(data) * 255).round() - (photo * 255).round()).pow(2).mean())
        return 8 * len(unpack(data)[1]) / pixels + lam * mse

    assert cost(chosen) <= cost(exact) + 0.01  # actual bytes vs the ideal code length: a little slack
    assert psnr(decompress(chosen), photo) > 20
