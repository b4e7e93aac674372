"""The Neural Collage image codec: an encoder network predicts the collage code in one pass.

The model (:class:`neural_collages.models.NeuralCollageCodec`) is a shipped safetensors file
(``assets/models/<family>-q<quality>.safetensors``, see :mod:`neural_collages.models.zoo`).
Encoding:

1. pad the image to a multiple of the crop size (replicate), YCbCr, 4:2:0 chroma;
2. one forward pass of the encoder over all crops gives the dense code; round to integers;
3. range means are quantised on the image-wide grid and turned into DPCM residuals
   (median-edge predictor, integer arithmetic);
4. coefficients and residuals are range-coded with ``constriction`` under the model's integer
   frequency tables (:mod:`neural_collages.coding.table_coding`), so the symbols decode
   bit-exactly on every machine (payload layout: ``bitstream.py``).

The file is the shared ``.clg`` container; its params name the model and hold a digest of the
model's tables and patches, so a file is never decoded with weights other than its own, and
(from payload version 2) the deblocking presets the encoder chose (``deblocking.py``).
Decoding rebuilds the dense codes, iterates the collage operators to their fixed point at any
integer scale and smooths the range borders. Version 1 files (no filter, every coefficient
coded on its own) decode exactly as before. Registered as ``"neural"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ... import limits
from ...coding import sparse_blocks, table_coding
from ...coding.container import ContainerHeader, pack, unpack
from ...errors import ConfigurationError, FormatError
from ...imaging.colour import planes_to_rgb_in_strips, ycbcr_to_rgb
from ...imaging.tensors import pad_to_multiple
from ...models.neural_collage import RANGE
from ...models.zoo import DEFAULT_FAMILY, FAMILIES, MODEL_NAME, available_qualities, model_name
from ..base import check_decode_scale, check_output_dtype, register, to_8bit_levels
from .bitstream import (
    IntegerCode,
    coefficient_grids,
    coefficient_rows,
    coefficient_sequence,
    crop_grid,
    decode_coefficients,
    decode_means,
    grids_to_coefficients,
    join_payload,
    mean_sequence,
    split_payload,
)
from . import deblocking
from .models import LoadedModel, load_named_model

#: Version 2 adds the ``deblock`` param, codes the coefficients by their nonzero positions
#: (``coding/sparse_blocks.py``) and zooms the learned patches smoothly (:data:`AUX_INTERPOLATION`);
#: version 1 files still decode, unchanged.
PAYLOAD_VERSION = 2
PARAM_KEYS = {1: {"payload_version", "model", "model_digest"},
              2: {"payload_version", "model", "model_digest", "deblock"}}
DEFAULT_QUALITY = 2
#: How version 2 resamples the learned patches at scales above 1 (version 1: "nearest"); the 1×
#: decode is the same either way (``core.pooling.aux_at_scale``).
AUX_INTERPOLATION = "bicubic"


def aux_interpolation(version: int) -> str:
    """How files of payload ``version`` resample the learned patches when zoomed."""
    return AUX_INTERPOLATION if version >= 2 else "nearest"


@dataclass
class DecodedCode:
    """A payload decoded to integers, with the model that reads them."""

    loaded: LoadedModel
    code: IntegerCode


# ----------------------------------------------------------------------------- encoder
def analyse(image: torch.Tensor, loaded: LoadedModel) -> IntegerCode:
    """Integer code of ``image`` ``(C, H, W)`` in [0, 1] under ``loaded``'s model."""
    model = loaded.model
    crop = model.config.crop
    C, H, W = image.shape
    rgb = image.expand(3, -1, -1) if C == 1 else image
    grid = crop_grid(W, H, crop)
    padded, _ = pad_to_multiple(rgb.unsqueeze(0), crop, mode="replicate")
    with torch.no_grad():
        ycc, luma, chroma = model.planes(padded)
        w_y, w_c = model.encode_weights(ycc, luma, chroma)
        # The model's rounding dead zone (NeuralCodecConfig.encoder_deadzone); the decoder is unaffected.
        dz = model.config.encoder_deadzone
        q_y, q_c = model.quantise(w_y, dz), model.quantise(w_c, dz)
        grid_y, grid_c = model.mean_grids(luma, chroma)
    levels = model.config.mean_levels
    mean_y = torch.round(grid_y).clamp(0, levels).long()[0, 0].numpy()
    mean_c = torch.round(grid_c).clamp(0, levels).long()[0].numpy()
    coefs = torch.cat([q_y.flatten(1), q_c.flatten(1)], 1).long()
    return IntegerCode(coefs, mean_y, mean_c, grid)


def _check_image(image) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ConfigurationError("the neural codec takes a (1 or 3, H, W) float image")
    C, H, W = image.shape
    if H * W > limits.MAX_PIXELS:
        raise ConfigurationError(f"image of {W}x{H} exceeds the pixel limit")


@dataclass
class Candidate:
    """One model's code of an image, with what the rate–distortion choice needs."""

    loaded: LoadedModel
    code: IntegerCode
    deblock: tuple[int, int]  # the presets the file will name
    bits: float  # ideal code length of the payload under the model's tables
    squared_error: float  # of the 8-bit RGB 1x decode, summed over pixels and channels


#: Another family's model is tried only when its λ is within this factor of the named model's:
#: at the same trade-off the lower ``bpp + λ·MSE`` is the better file, whereas a model made for a
#: distant λ would mostly move the file along the curve (and could give two qualities one file).
LAMBDA_MATCH = 1.5


def candidate_models(family: str, quality: int) -> list[str]:
    """``family``'s model at ``quality``, then each other family's model nearest to it in λ (the
    rate–distortion trade-off it was trained for) if within :data:`LAMBDA_MATCH`: the models the
    encoder chooses among."""
    first = model_name(family, quality)
    lam = load_named_model(first).model.config.lam
    names = [first]
    for other in FAMILIES:
        qualities = available_qualities(other)
        if other == family or not qualities:
            continue
        gap, nearest = min((abs(math.log(load_named_model(n).model.config.lam / lam)), n)
                           for n in (model_name(other, q) for q in qualities))
        if gap <= math.log(LAMBDA_MATCH) + 1e-9:
            names.append(nearest)
    return names


def code_candidate(image: torch.Tensor, loaded: LoadedModel, deblock: bool = True,
                   code: IntegerCode | None = None) -> Candidate:
    """``image``'s code under ``loaded`` (or the given ``code``), its deblocking choice, its size and its 1x error."""
    code = analyse(image, loaded) if code is None else code
    presets, error = choose_deblocking(image, loaded, code, search=deblock)
    return Candidate(loaded, code, presets, code_bits(loaded, code), error)


def write_candidate(candidate: Candidate, image_shape) -> bytes:
    """The ``.clg`` file of a coded candidate."""
    C, H, W = image_shape
    loaded, code = candidate.loaded, candidate.code
    rows = coefficient_rows(loaded.model, *coefficient_grids(loaded.model, code.coefs, code.grid))
    coef_bytes = sparse_blocks.encode_rows(rows, loaded.block_models)
    mean_bytes = table_coding.encode_in_order(*mean_sequence(loaded.model, code.mean_y, code.mean_c), loaded.mean_tables)
    params = {"payload_version": PAYLOAD_VERSION, "model": loaded.name, "model_digest": loaded.digest,
              "deblock": list(candidate.deblock)}
    return pack(ContainerHeader("neural", W, H, C, params), join_payload(coef_bytes, mean_bytes))


def encode(image: torch.Tensor, model: str = DEFAULT_FAMILY, quality: int = DEFAULT_QUALITY,
           deblock: bool = True, choose_model: bool = True) -> bytes:
    """Compress a float image ``(C, H, W)`` in ``[0, 1]`` (C = 1 or 3) with the shipped ``model`` at ``quality``.

    With ``choose_model`` the image is also coded with each other family's model of about the same
    λ (:func:`candidate_models`) and the file keeps the code of least rate–distortion cost
    ``bpp + λ·MSE`` at the named model's λ (ties keep the named model; the file names its model),
    so no family flag gives a costlier file than another family would. The models are compared
    on their unfiltered decodes; with ``deblock`` the file then names the deblocking presets that
    decode the kept code best at 1× (:func:`choose_deblocking`; searching them for one model
    only keeps the choice's cost to a second analysis).
    """
    _check_image(image)
    image = image.float()
    names = candidate_models(model, quality) if choose_model else [model_name(model, quality)]
    lam = load_named_model(names[0]).model.config.lam
    samples = image.numel()

    def cost(c: Candidate) -> float:
        return c.bits / (samples / image.shape[0]) + lam * c.squared_error / samples

    candidates = [code_candidate(image, load_named_model(n), deblock and len(names) == 1) for n in names]
    best = min(candidates, key=cost)
    if deblock and len(names) > 1:
        best = code_candidate(image, best.loaded, deblock, code=best.code)
    return write_candidate(best, image.shape)


def choose_deblocking(image: torch.Tensor, loaded: LoadedModel, code: IntegerCode,
                      search: bool = True) -> tuple[tuple[int, int], float]:
    """The deblocking presets ``(luma, chroma)`` whose 1× decode of ``code`` is closest to ``image``
    (``(0, 0)`` without ``search``), and the squared 8-bit RGB error of that decode."""
    model = loaded.model
    C, H, W = image.shape
    rgb = image.expand(3, -1, -1) if C == 1 else image
    padded, _ = pad_to_multiple(rgb.unsqueeze(0), model.config.crop, mode="replicate")
    code_y, code_c = dense_codes(loaded, code)
    with torch.no_grad():
        ycc, _, _ = model.planes(padded)
        ((luma, chroma),) = model.synthesize_planes(code_y, code_c, 1, code.grid)
    target = to_8bit_levels(image, 255.0)

    def rgb_error(y, c):
        decoded = to_8bit_levels(model.planes_to_rgb(y[None], c[None])[0, :C, :H, :W], 255.0)
        return float((decoded - target).double().pow(2).sum()) * 255.0**2

    if not search:
        return deblocking.OFF, rgb_error(luma[0], chroma[0])
    return deblocking.choose(luma[0], chroma[0], ycc[0, :1], ycc[0, 1:], (H, W), model.upsample_chroma, rgb_error)


def code_bits(loaded: LoadedModel, code: IntegerCode) -> float:
    """Ideal code length (bits) of an integer code's symbols under the model's integer tables."""
    values, tables = coefficient_sequence(loaded.model, *coefficient_grids(loaded.model, code.coefs, code.grid))
    means = mean_sequence(loaded.model, code.mean_y, code.mean_c)
    return loaded.coef_tables.bits(values, tables) + loaded.mean_tables.bits(*means)


def estimate_bits(image: torch.Tensor, model: str = DEFAULT_FAMILY, quality: int = DEFAULT_QUALITY) -> float:
    """Ideal code length (bits) of the payload's symbols under the named model's integer tables."""
    _check_image(image)
    loaded = load_named_model(model_name(model, quality))
    return code_bits(loaded, analyse(image.float(), loaded))


# ----------------------------------------------------------------------------- decoder
def config_from_params(params: dict) -> dict:
    """Validate a file's params (``FormatError`` on anything unexpected); ``deblock`` becomes a
    pair of presets (``(0, 0)`` for version 1 files)."""
    version = params.get("payload_version")
    if type(version) is not int or version not in PARAM_KEYS:
        raise FormatError(f"unsupported neural payload version {version!r}")
    if set(params) != PARAM_KEYS[version]:
        raise FormatError(f"neural version {version} file params must be {', '.join(sorted(PARAM_KEYS[version]))}; "
                          f"got {sorted(params)}")
    name = params["model"]
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise FormatError(f"unknown neural model {name!r}")
    if not isinstance(params["model_digest"], str):
        raise FormatError("bad model digest")
    config = dict(params)
    config["deblock"] = deblocking.check_presets(params["deblock"]) if version >= 2 else deblocking.OFF
    config["aux_interpolation"] = aux_interpolation(version)
    return config


def decode_code(header: ContainerHeader, payload: bytes, params: dict) -> DecodedCode:
    """Entropy-decode a payload to its integer code (with every count and value checked)."""
    try:
        loaded = load_named_model(params["model"])
    except ConfigurationError as exc:
        raise FormatError(str(exc)) from None
    if loaded.digest != params["model_digest"]:
        raise FormatError(f"the file was made with other weights for model {params['model']!r} "
                          f"(digest {params['model_digest']}, this build has {loaded.digest})")
    model = loaded.model
    crop = model.config.crop
    rows, cols = crop_grid(header.width, header.height, crop)
    coef_bytes, mean_bytes = split_payload(payload)
    shape_y = (rows * crop // RANGE, cols * crop // RANGE)
    shape_c = (shape_y[0] // model.chroma_factor, shape_y[1] // model.chroma_factor)
    if params["payload_version"] >= 2:
        decoder = sparse_blocks.BlockDecoder(coef_bytes, loaded.block_models)
        decode_row = decoder.decode_row
    else:
        per_crop = (model.luma_op.num_ranges * model.luma_op.num_candidates
                    + 2 * model.chroma_op.num_ranges * model.chroma_op.num_candidates)
        decoder = table_coding.InOrderDecoder(coef_bytes, loaded.coef_tables, max_symbols=rows * cols * per_crop)

        def decode_row(bases, D):
            return decoder.decode((bases[:, None] + np.arange(D)).reshape(-1)).reshape(len(bases), D)
    luma, chroma = decode_coefficients(model, decode_row, shape_y, shape_c)
    decoder.finish()
    coefs = grids_to_coefficients(model, luma, chroma)
    ny, nc = shape_y[0] * shape_y[1], shape_c[0] * shape_c[1]
    decoder = table_coding.InOrderDecoder(mean_bytes, loaded.mean_tables, max_symbols=ny + 2 * nc)
    mean_y, mean_c = decode_means(model, decoder, shape_y, shape_c)
    decoder.finish()
    levels = model.config.mean_levels
    if mean_y.min() < 0 or mean_y.max() > levels or mean_c.min() < 0 or mean_c.max() > levels:
        raise FormatError("decoded range means fall outside [0, 255]")
    return DecodedCode(loaded, IntegerCode(coefs, mean_y, mean_c, (rows, cols)))


def dense_codes(loaded: LoadedModel, code: IntegerCode):
    """The luma and chroma :class:`DenseCode` s of an integer code (one per crop, no gradients)."""
    model = loaded.model
    n = code.grid[0] * code.grid[1]
    Ry, Dy = model.luma_op.num_ranges, model.luma_op.num_candidates
    Rc, Dc = model.chroma_op.num_ranges, model.chroma_op.num_candidates
    per = code.coefs.reshape(n, -1)
    q_y = per[:, : Ry * Dy].reshape(n, 1, Ry, Dy).float()
    q_c = per[:, Ry * Dy:].reshape(n, 2, Rc, Dc).float()
    my = torch.from_numpy(code.mean_y).float()[None, None]
    mc = torch.from_numpy(code.mean_c).float()[None]
    with torch.no_grad():
        return model.codes(q_y, q_c, my, mc)


def reconstruct(loaded: LoadedModel, code: IntegerCode, scale: int = 1, return_trajectory: bool = False,
                deblock: tuple[int, int] = deblocking.OFF, aux_interpolation: str = AUX_INTERPOLATION):
    """Decode an integer code to the padded RGB image ``(1, 3, s·rows·crop, s·cols·crop)`` in [0, 1].

    ``deblock`` are the file's presets (every iterate is filtered), ``aux_interpolation`` how its
    version resamples the learned patches when zooming. Returns ``(image, frames)``; ``frames``
    (the iterates) is ``None`` unless ``return_trajectory``.
    """
    model = loaded.model
    code_y, code_c = dense_codes(loaded, code)
    with torch.no_grad():
        planes = model.synthesize_planes(code_y, code_c, 1, code.grid, scale=scale, trajectory=return_trajectory,
                                         aux_interpolation=aux_interpolation)
        frames = []
        for luma, chroma in planes:
            if deblock != deblocking.OFF:
                y, c = deblocking.apply(luma[0], chroma[0], deblock, scale, in_place=True)
                luma, chroma = y[None], c[None]
            frames.append(model.planes_to_rgb(luma, chroma))
    return (frames[-1], frames) if return_trajectory else (frames[-1], None)


#: Outputs up to this many pixels are decoded in one batch of crops (as the golden files were);
#: larger ones band by band, so that peak memory is a few planes instead of every crop's pooled
#: candidates at once (a 13x Kodak decode took 4.9 GB in one batch).
WHOLE_DECODE_PIXELS = 1 << 22
#: Pooled candidate values per band of a large decode (64 MB as float32).
BAND_BUDGET = 1 << 24
#: Chroma rows per colour-conversion strip of a large decode (as the PIFS codec: a few MB per temporary).
STRIP_ROWS = 64


def _rgb_levels(ycc: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # The same arithmetic as synthesize() followed by finish() in decode_parts.
    return to_8bit_levels(ycbcr_to_rgb(ycc * 255.0) * (1 / 255.0) * 255, dtype=dtype)


def _decode_in_bands(loaded: LoadedModel, code: IntegerCode, header: ContainerHeader, scale: int,
                     deblock: tuple[int, int], aux_interpolation: str,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A large decode: planes band by band (``decode_planes``), deblocked in place, then colour in strips."""
    model = loaded.model
    code_y, code_c = dense_codes(loaded, code)
    with torch.no_grad():
        luma, chroma = model.decode_planes(code_y, code_c, code.grid, scale, budget=BAND_BUDGET,
                                           aux_interpolation=aux_interpolation)
        luma, chroma = deblocking.apply(luma, chroma, deblock, scale, in_place=True)
        rgb = planes_to_rgb_in_strips(luma[0], chroma, (scale * header.height, scale * header.width),
                                      lambda ycc: _rgb_levels(ycc, dtype), factor=model.chroma_factor,
                                      strip_rows=STRIP_ROWS, dtype=dtype)
    return rgb[:1].clone() if header.channels == 1 else rgb


def decode_parts(header: ContainerHeader, payload: bytes, params: dict, scale: int = 1,
                 return_trajectory: bool = False, dtype: torch.dtype = torch.float32):
    """Decode a validated header and payload at integer ``scale`` (see ``codecs.decompress``)."""
    scale = check_decode_scale(scale, header)
    check_output_dtype(dtype)
    if header.channels not in (1, 3):
        raise FormatError(f"neural files hold 1 or 3 channels, not {header.channels}")
    decoded = decode_code(header, payload, params)
    deblock = params.get("deblock", deblocking.OFF)
    aux = params.get("aux_interpolation") or aux_interpolation(params.get("payload_version", 1))
    if not return_trajectory and scale * scale * header.width * header.height > WHOLE_DECODE_PIXELS:
        return _decode_in_bands(decoded.loaded, decoded.code, header, scale, deblock, aux, dtype)
    image, frames = reconstruct(decoded.loaded, decoded.code, scale, return_trajectory, deblock, aux)

    def finish(x):
        x = x[0, :, : scale * header.height, : scale * header.width]
        if header.channels == 1:
            x = x[:1]
        return to_8bit_levels(x * 255, dtype=dtype)

    if return_trajectory:
        return finish(image), [finish(f) for f in frames]
    return finish(image)


def decode(data: bytes, scale: int = 1) -> torch.Tensor:
    """Decode the bytes of a neural ``.clg`` file at ``scale``."""
    header, payload = unpack(data)
    if header.codec != "neural":
        raise FormatError(f"not a neural file (codec {header.codec!r})")
    return decode_parts(header, payload, config_from_params(header.params), scale)


class NeuralCodec:
    """The Neural Collage codec behind the :class:`~neural_collages.codecs.base.Codec` protocol."""

    name = "neural"

    def qualities(self, model: str | None = None) -> tuple[int, ...]:
        return available_qualities(model or DEFAULT_FAMILY)

    def encode(self, image: torch.Tensor, quality: int | None = None, *, model: str | None = None,
               progress: bool = False, exact_model: bool = False) -> bytes:
        family = model or DEFAULT_FAMILY
        levels = self.qualities(family)
        if not levels:
            raise ConfigurationError(f"no {family} models are shipped with this build")
        if quality is None:
            quality = DEFAULT_QUALITY if DEFAULT_QUALITY in levels else levels[0]
        return encode(image, family, quality, choose_model=not exact_model)

    def config_from_params(self, params: dict) -> dict:
        return config_from_params(params)

    def decode(self, header: ContainerHeader, payload: bytes, config: dict, scale: int = 1,
               return_trajectory: bool = False, dtype: torch.dtype = torch.float32):
        return decode_parts(header, payload, config, scale, return_trajectory, dtype)


CODEC = register(NeuralCodec())
