import pytest
import torch
import torch.nn.functional as F

from fuzzing import decode_hostile, mutations, payload_flips, with_params
from neural_collages.codecs import compress, decompress, pifs
from neural_collages.coding.container import pack, unpack
from neural_collages.errors import ConfigurationError, FormatError
from neural_collages.imaging.io import load_image
from neural_collages.imaging.metrics import psnr
from neural_collages.core.quadtree import QuadtreeCollage
from neural_collages.assets import sample_image_path


@pytest.fixture(scope="module")
def photo():
    """A 70x90 crop of the bundled photo (odd height: exercises padding and 4:2:0 edges)."""
    return load_image(sample_image_path())[:, 40:110, 60:150].contiguous()


@pytest.fixture(scope="module")
def encoded(photo):
    return pifs.encode(photo, pifs.PifsConfig(quality=6))


def test_round_trip_quality_and_rate_ordering(photo):
    sizes, qualities = [], []
    for q in (1, 4, 8):
        data = pifs.encode(photo, pifs.PifsConfig(quality=q))
        decoded = pifs.decode(data)
        assert decoded.shape == photo.shape
        sizes.append(len(data))
        qualities.append(float(psnr(photo, decoded)))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert qualities == sorted(qualities)
    assert qualities[-1] > 28


def test_decoding_is_bit_exact_across_runs_and_thread_counts(encoded):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = pifs.decode(encoded, scale=2)
        torch.set_num_threads(2)
        two = pifs.decode(encoded, scale=2)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    assert torch.equal(pifs.decode(encoded), pifs.decode(encoded))


def test_encoding_is_deterministic_and_the_file_is_canonical(photo, encoded):
    assert pifs.encode(photo, pifs.PifsConfig(quality=6)) == encoded
    header, payload = unpack(encoded)
    assert pack(header, payload) == encoded


def test_decode_uses_exactly_the_stored_values(encoded):
    """The decoder's codes are the quantised symbols: scales on the s grid, integer means."""
    header, payload = unpack(encoded)
    config = pifs.PifsConfig.from_params(header.params)
    for plane in pifs.decode_planes(header.width, header.height, header.channels, payload, config):
        for code in plane.codes:
            if code is None:
                continue
            q = code.scale / config.s_step
            assert torch.allclose(q, q.round(), atol=1e-4)
            assert torch.equal(code.bias, code.bias.round())


def test_scale_2_decode_pools_to_the_1x_decode_plane_by_plane(encoded):
    header, payload = unpack(encoded)
    config = pifs.PifsConfig.from_params(header.params)
    for plane in pifs.decode_planes(header.width, header.height, header.channels, payload, config):
        qt = QuadtreeCollage(plane.layout.padded, config.block_sizes, config.domain_strides)
        one, _ = qt.decode(plane.tree, plane.codes, scale=1, steps=config.decode_steps)
        two, _ = qt.decode(plane.tree, plane.codes, scale=2, steps=config.decode_steps)
        torch.testing.assert_close(F.avg_pool2d(two, 2), one, atol=2e-3, rtol=0)


def test_greyscale_scale_consistency_on_the_image(photo):
    """Pooling a zoomed decode gives about the 1x decode (docs/pifs.md): the zoom's interpolation is
    not pooling-exact (this small, detailed crop: 41.6 dB); the fractal zoom alone (``zoom`` 16)
    is, up to 8-bit rounding and clamping."""
    import dataclasses

    from neural_collages.codecs.pifs.codec import decode_parts

    grey = photo.mean(0, keepdim=True)
    data = pifs.encode(grey, pifs.PifsConfig(quality=5))
    one = pifs.decode(data)
    three = pifs.decode(data, scale=3)
    assert one.shape == (1, 70, 90) and three.shape == (1, 210, 270)
    pooled = F.avg_pool2d(three.unsqueeze(0), 3)[0]
    assert (pooled - one).abs().mean() <= 1.5 / 255 and float(psnr(pooled, one)) > 39
    header, payload = unpack(data)
    fractal = decode_parts(header, payload, dataclasses.replace(pifs.PifsConfig.from_params(header.params),
                                                                zoom_detail=16), 3)
    # Equal up to the 8-bit rounding of both decodes, except where the zoomed decode overshoots
    # [0, 255] and clamping (before pooling) changes the average: a few pixels at most.
    off = (F.avg_pool2d(fractal.unsqueeze(0), 3)[0] - one).abs() > 1 / 255 + 1e-6
    assert off.float().mean() < 0.01


def test_zoomed_decode_blends_interpolation_and_fractal_detail(photo):
    """A version-4 s× decode is α·F_s + C((1 − α)·F_1 + r) (``zoom.py``): α = 1 is the fractal zoom
    alone, α = 0 the interpolated 1x decode; the file's α is 4/16. Compared on 8-bit outputs, so
    up to rounding and clamping."""
    import dataclasses

    from neural_collages.codecs.pifs.codec import decode_parts
    from neural_collages.codecs.pifs.zoom import add_interpolated

    grey = photo.mean(0, keepdim=True)
    data = pifs.encode(grey, pifs.PifsConfig(quality=3))
    header, payload = unpack(data)
    config = pifs.PifsConfig.from_params(header.params)
    assert header.params["zoom"] == config.zoom_detail == 4 and not config.has_residual
    one, two = pifs.decode(data), pifs.decode(data, 2)
    fractal_only = decode_parts(header, payload, dataclasses.replace(config, zoom_detail=16), 2)
    legacy = decode_parts(header, payload, dataclasses.replace(config, zoom_detail=None), 2)
    assert torch.equal(fractal_only, legacy)  # no residual: α = 1 is the plain fractal zoom
    smooth = torch.zeros(2 * one.shape[1], 2 * one.shape[2])
    add_interpolated(smooth, one[0] * 255, 2)
    interpolated = decode_parts(header, payload, dataclasses.replace(config, zoom_detail=0), 2)
    assert ((interpolated[0] * 255 - smooth.clamp(0, 255).round()).abs() > 1).float().mean() < 0.01
    blend = 0.25 * fractal_only + 0.75 * interpolated
    assert ((two - blend).abs() > 1.5 / 255).float().mean() < 0.01
    assert (two - interpolated).abs().max() > 4 / 255 and (two - fractal_only).abs().max() > 4 / 255


def test_tiny_and_odd_images(photo):
    for h, w in [(1, 1), (3, 5), (33, 2)]:
        image = photo[:, :h, :w].contiguous()
        decoded = decompress(compress(image, "pifs", 8))
        assert decoded.shape == image.shape
        assert float(psnr(image, decoded)) > 20


def test_bad_arguments():
    image = torch.rand(3, 16, 16)
    with pytest.raises(ConfigurationError):
        pifs.PifsConfig(quality=0)
    with pytest.raises(ConfigurationError):
        pifs.PifsConfig(block_sizes=(32, 8))
    with pytest.raises(ConfigurationError):
        pifs.encode(torch.rand(2, 16, 16))
    with pytest.raises(ConfigurationError):
        compress(image, "jpeg")
    data = compress(image, "pifs", 3)
    for scale in (0, pifs.MAX_SCALE + 1, 1.5):
        with pytest.raises(ConfigurationError):
            decompress(data, scale=scale)


def test_hostile_files_raise_only_format_errors_quickly(encoded):
    """Container-level mutations, plus payload mutations with a valid CRC (reaching the
    entropy decoder and the structure checks), and crafted params."""
    cases = list(mutations(encoded, 300, seed=1)) + payload_flips(encoded, 300, seed=2)
    header, payload = unpack(encoded)
    for key, value in [("quality", 99), ("blocks", [32, 16]), ("strides", [0, 0, 0, 0]), ("s_max", "x"),
                       ("steps", 10**9), ("v", 2), ("mean_step", 0), ("extra", 1)]:
        params = dict(header.params, **{key: value})
        import json

        raw = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
        cases.append((f"params {key}", with_params(encoded, raw)))

    def check(label, image):
        assert image.dim() == 3, label

    accepted, seconds = decode_hostile(cases, decompress, check)
    assert seconds < 60
    assert accepted < len(cases) // 10


def test_one_search_serves_every_quality(photo):
    """The benchmark sweep reuses one search: its files must be exactly compress()'s."""
    from benchmarks.ours import PifsSweep

    sweep = PifsSweep()
    image = (photo * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    for q in (2, 7):  # both quantisation presets
        data = sweep.encode(image, q)
        assert data == compress(torch.from_numpy(image).permute(2, 0, 1).float() / 255, "pifs", q)
        assert sweep.last_encode_seconds > 0


@pytest.mark.parametrize("rows", [1, 3, 7])
def test_colour_conversion_in_strips_is_bit_identical_to_one_strip(encoded, monkeypatch, rows):
    # Large decodes convert YCbCr -> RGB a few chroma rows at a time (bounded temporaries); each
    # strip takes a one-row halo for the chroma upsampling, so the pixels must not change.
    from neural_collages.codecs.pifs import codec as pifs_codec

    whole = {s: decompress(encoded, scale=s) for s in (1, 3)}  # 70 rows: odd chroma edge at 1x
    monkeypatch.setattr(pifs_codec, "STRIP_ROWS", rows)
    for s, image in whole.items():
        assert torch.equal(decompress(encoded, scale=s), image)


@pytest.mark.parametrize("quality", [1, 3, 6])
def test_the_encoder_names_the_deblocking_that_decodes_best(photo, quality):
    import dataclasses

    from neural_collages.codecs.pifs.codec import decode_parts
    from neural_collages.codecs.pifs.config import DEBLOCK_PRESETS
    from neural_collages.imaging.metrics import psnr

    data = pifs.encode(photo, pifs.PifsConfig(quality=quality))
    header, payload = unpack(data)
    config = pifs.PifsConfig.from_params(header.params)
    assert not config.has_residual and config.deblock in (0, *DEBLOCK_PRESETS)
    scores = {p: float(psnr(photo, decode_parts(header, payload, dataclasses.replace(config, deblock=p))))
              for p in (0, *DEBLOCK_PRESETS)}
    assert scores[config.deblock] == max(scores.values())
    assert torch.equal(pifs.decode(data), decode_parts(header, payload, config))


@pytest.mark.parametrize("params, message", [
    ({"deblock": 9}, "deblock"), ({"deblock": "1"}, "deblock"), ({"deblock": True}, "deblock"),
    ({"v": 1}, "exactly the keys"),  # a version-1 file names no filter
])
def test_the_deblocking_parameter_is_checked_like_the_others(encoded, params, message):
    import dataclasses

    from neural_collages.coding.container import pack

    header, payload = unpack(encoded)
    forged = pack(dataclasses.replace(header, params={**header.params, **params}), payload)
    with pytest.raises(FormatError, match=message):
        pifs.decode(forged)
    missing = {k: v for k, v in header.params.items() if k != "deblock"}
    with pytest.raises(FormatError, match="exactly the keys"):
        pifs.decode(pack(dataclasses.replace(header, params=missing), payload))


@pytest.mark.parametrize("quality", [1, 4])
def test_adaptive_symbol_models_change_only_the_entropy_coding(photo, quality):
    """Version 5 (adaptive models) and version 4 (stored histograms) code the same fractal code:
    same decisions, same pixels; only the streams differ, and learning is cheaper here."""
    analyses = pifs.analyse(photo, pifs.PifsConfig())
    files = {adaptive: pifs.encode_analysed(photo, analyses, pifs.PifsConfig(quality=quality,
                                                                           adaptive_symbols=adaptive),
                                            residual=False)
             for adaptive in (True, False)}
    assert unpack(files[True])[0].params["v"] == 5 and unpack(files[False])[0].params["v"] == 4
    assert torch.equal(decompress(files[True]), decompress(files[False]))
    assert len(files[True]) < len(files[False])
    header, payload = unpack(files[True])
    with pytest.raises(FormatError):  # the payload is not readable as stored histograms
        pifs.decode_parts(header, payload, pifs.PifsConfig.from_params({**header.params, "v": 4}), 1)
