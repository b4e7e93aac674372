"""The Neural Collage image codec: an encoder network predicts the collage code in one pass.

The model (:class:`neural_collages.models.NeuralCollageCodec`) is loaded from a safetensors
file shipped in the package (``data/models/<model>-q<quality>.safetensors``). Encoding:

1. pad the image to a multiple of the crop size (replicate), YCbCr, 4:2:0 chroma;
2. one forward pass of the encoder over all crops gives the dense code; round to integers;
3. range means are quantised on the image-wide grid and turned into DPCM residuals
   (median-edge predictor, integer arithmetic);
4. coefficients and residuals are range-coded with ``constriction`` under the model's integer
   frequency tables (:mod:`neural_collages.table_coding`), so the symbols decode bit-exactly on
   every machine.

The file is the shared ``.clg`` container; its params name the model and hold a digest of the
model's tables and patches, so a file is never decoded with weights other than its own.
Decoding rebuilds the dense codes and iterates the collage operators to their fixed point at any
integer scale.

Payload (version 1): varint length of the coefficient stream, the coefficient stream, the mean
stream (both :func:`table_coding.encode_in_order`).
Coefficients are coded range by range over the image-wide range grids in raster order (luma,
then Cb, then Cr), all candidates of a range together; a context model picks each range's
tables from the nonzero counts of the row above, so the decoder decodes a row at a time.
Mean residuals: the luma grid in raster order, then Cb, then Cr; a mean-context model picks each
row's tables from the activity of the decoded row above.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .. import table_coding
from ..container import ContainerHeader, pack, unpack
from ..errors import ConfigurationError, FormatError
from ..images import MAX_PIXELS, pad_to_multiple
from ..models.collage_codec import (
    NUM_MEAN_CONTEXTS,
    RANGE,
    NeuralCollageCodec,
    context_grid,
    from_crops,
    mean_context_grid,
    med_predict,
    to_crops,
)

PAYLOAD_VERSION = 1
MODELS = ("photo", "aerial")
DEFAULT_MODEL = "photo"
DEFAULT_QUALITY = 2
MAX_SCALE = 16
_MODEL_NAME = re.compile(r"^(photo|aerial)-q([1-9])$")


def model_dir() -> Path:
    return Path(str(resources.files("neural_collages") / "data" / "models"))


def available_qualities(model: str = DEFAULT_MODEL) -> tuple[int, ...]:
    """Quality levels with a shipped model file (1 = smallest files)."""
    if model not in MODELS:
        raise ConfigurationError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    found = []
    for path in model_dir().glob(f"{model}-q*.safetensors"):
        m = _MODEL_NAME.match(path.stem)
        if m:
            found.append(int(m.group(2)))
    return tuple(sorted(found))


class LoadedModel:
    """A model file ready for coding: the network, its integer tables and their digest."""

    def __init__(self, name: str, path: Path):
        from ..training import load_model

        self.name = name
        self.model, coef, mean, self.info = load_model(path)
        bound = self.model.config.coef_bound
        levels = self.model.config.mean_levels
        try:
            self.coef_tables = table_coding.FrequencyTables(coef, np.full(coef.shape[0], -bound))
            self.mean_tables = table_coding.FrequencyTables(mean, np.full(mean.shape[0], -levels))
        except ConfigurationError as exc:
            raise FormatError(f"{path}: invalid entropy tables ({exc})") from None
        digest = hashlib.sha256()
        digest.update(coef.astype("<i4").tobytes())
        digest.update(mean.astype("<i4").tobytes())
        for op in (self.model.luma_op, self.model.chroma_op):
            digest.update(op.aux_patches.detach().numpy().astype("<f4").tobytes())
        self.digest = digest.hexdigest()[:16]


@lru_cache(maxsize=8)
def load_named_model(name: str) -> LoadedModel:
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise FormatError(f"unknown neural model name {name!r}")
    path = model_dir() / f"{name}.safetensors"
    if not path.is_file():
        raise ConfigurationError(f"model {name!r} is not shipped with this build ({path} missing)")
    return LoadedModel(name, path)


def model_name(model: str, quality: int) -> str:
    qualities = available_qualities(model)
    if quality not in qualities:
        raise ConfigurationError(f"quality must be one of {qualities} for --model {model}, got {quality!r}")
    return f"{model}-q{quality}"


# ----------------------------------------------------------------------------- symbols
def _dpcm_residuals(grid: np.ndarray, first: int) -> np.ndarray:
    """Integer MED residuals of a ``(h, w)`` grid (vectorised; the decoder inverts it in raster order)."""
    pred = med_predict(torch.from_numpy(grid), first).numpy()
    return grid - pred


def _dpcm_row(residuals: list[int], above: list[int] | None, first: int) -> list[int]:
    """One row of mean indices from its MED residuals and the decoded row above (integer arithmetic)."""
    row: list[int] = []
    for x, res in enumerate(residuals):
        if above is None:
            pred = first if x == 0 else row[x - 1]
        elif x == 0:
            pred = above[0]
        else:
            a, b, c = row[x - 1], above[x], above[x - 1]
            lo, hi = (a, b) if a < b else (b, a)
            pred = lo if c >= hi else hi if c <= lo else a + b - c
        row.append(pred + res)
    return row


def _mean_tables(model: NeuralCollageCodec, grid: torch.Tensor, plane: int) -> torch.Tensor:
    """Table of every mean residual of one plane's index grid ``(h, w)``."""
    if not model.config.mean_context:
        return torch.full(grid.shape, plane, dtype=torch.long)
    return plane * NUM_MEAN_CONTEXTS + mean_context_grid(grid)


def _mean_sequence(model: NeuralCollageCodec, mean_y: np.ndarray, mean_c: np.ndarray):
    """DPCM residuals and their tables in coding order: luma grid (raster), Cb, Cr."""
    first = model.config.mean_levels // 2
    values, tables = [], []
    for plane, grid in enumerate([mean_y, mean_c[0], mean_c[1]]):
        values.append(_dpcm_residuals(grid, first).ravel())
        tables.append(_mean_tables(model, torch.from_numpy(grid), plane).reshape(-1).numpy())
    return np.concatenate(values), np.concatenate(tables)


def _decode_means(model: NeuralCollageCodec, decoder, shape_y: tuple[int, int], shape_c: tuple[int, int]):
    """Decode the three mean grids row by row (a row's tables depend only on the row above)."""
    first = model.config.mean_levels // 2
    grids = []
    for plane, (h, w) in enumerate([shape_y, shape_c, shape_c]):
        rows: list[list[int]] = []
        for i in range(h):
            if model.config.mean_context and i:
                pair = torch.tensor([rows[-1], rows[-1]])
                tables = (plane * NUM_MEAN_CONTEXTS + mean_context_grid(pair)[1]).numpy()
            else:
                tables = np.full(w, plane * (NUM_MEAN_CONTEXTS if model.config.mean_context else 1))
            residuals = decoder.decode(tables).tolist()
            rows.append(_dpcm_row(residuals, rows[-1] if rows else None, first))
        grids.append(np.asarray(rows, dtype=np.int64).reshape(h, w))
    return grids[0], np.stack(grids[1:])


def _layout(width: int, height: int, crop: int) -> tuple[int, int]:
    return -(-height // crop), -(-width // crop)


def _coefficient_grids(model: NeuralCollageCodec, coefs: torch.Tensor, grid: tuple[int, int]):
    """Per-crop integer codes ``(n, Ry·Dy + 2·Rc·Dc)`` → image-wide grids ``(Dy, R, C)`` and ``(2, Dc, Rc', Cc')``."""
    n = grid[0] * grid[1]
    r = model.config.crop // RANGE
    Ry, Dy = model.luma_op.num_ranges, model.luma_op.num_candidates
    Dc = model.chroma_op.num_candidates
    q_y = coefs[:, : Ry * Dy].reshape(n, r, r, Dy).permute(0, 3, 1, 2)
    rc = r // model.chroma_factor
    q_c = coefs[:, Ry * Dy:].reshape(n, 2, rc, rc, Dc).permute(0, 1, 4, 2, 3).reshape(n, 2 * Dc, rc, rc)
    luma = from_crops(q_y, 1, grid)[0]
    chroma = from_crops(q_c, 1, grid)[0].reshape(2, Dc, grid[0] * rc, grid[1] * rc)
    return luma, chroma


def _grids_to_coefficients(model: NeuralCollageCodec, luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_coefficient_grids`."""
    r = model.config.crop // RANGE
    Dc = chroma.shape[1]
    q_y = to_crops(luma.unsqueeze(0), r)  # (n, Dy, r, r)
    n = q_y.shape[0]
    rc = r // model.chroma_factor
    q_c = to_crops(chroma.reshape(1, 2 * Dc, *chroma.shape[-2:]), rc).reshape(n, 2, Dc, rc, rc)
    return torch.cat([q_y.permute(0, 2, 3, 1).reshape(n, -1), q_c.permute(0, 1, 3, 4, 2).reshape(n, -1)], 1)


def _plane_tables(model: NeuralCollageCodec, plane: torch.Tensor, first_type: int) -> torch.Tensor:
    """Table of every coefficient of one plane's grid ``(D, R, C)``, laid out ``(R, C, D)``."""
    D = plane.shape[0]
    types = first_type + torch.arange(D)
    if not model.config.context:
        return types.expand(plane.shape[1], plane.shape[2], D)
    ctx = context_grid((plane != 0).sum(0))
    return ctx.unsqueeze(-1) * model.num_types + types


def _coefficient_sequence(model: NeuralCollageCodec, luma: torch.Tensor, chroma: torch.Tensor):
    """Values and tables in coding order: luma ranges in raster order (all candidates of a range
    together), then the Cb ranges, then the Cr ranges."""
    Dy, Dc = luma.shape[0], chroma.shape[1]
    parts = [(luma, 0), (chroma[0], Dy), (chroma[1], Dy + Dc)]
    values = [p.permute(1, 2, 0).reshape(-1) for p, _ in parts]
    tables = [_plane_tables(model, p, t).reshape(-1) for p, t in parts]
    return torch.cat(values).long().numpy(), torch.cat(tables).long().numpy()


def _decode_coefficients(model: NeuralCollageCodec, decoder, shape_y: tuple[int, int], shape_c: tuple[int, int]):
    """Decode the coefficient grids row by row (a row's contexts depend only on the row above)."""
    Dy, Dc = model.luma_op.num_candidates, model.chroma_op.num_candidates
    planes = []
    for D, first, (R, C) in ((Dy, 0, shape_y), (Dc, Dy, shape_c), (Dc, Dy + Dc, shape_c)):
        types = first + np.arange(D)
        plane = np.zeros((R, C, D), dtype=np.int64)
        above = torch.zeros(C, dtype=torch.long)
        for i in range(R):
            if model.config.context:
                ctx = context_grid(torch.stack([above, torch.zeros_like(above)]))[1].numpy()
                tables = ctx[:, None] * model.num_types + types[None, :]
            else:
                tables = np.broadcast_to(types, (C, D))
            row = decoder.decode(tables.reshape(-1)).reshape(C, D)
            plane[i] = row
            above = torch.from_numpy((row != 0).sum(1))
        planes.append(torch.from_numpy(plane).permute(2, 0, 1))
    return planes[0], torch.stack(planes[1:])


# ----------------------------------------------------------------------------- encoder
def analyse(image: torch.Tensor, loaded: LoadedModel):
    """Integer code of ``image`` ``(C, H, W)`` in [0, 1]: coefficient symbols, mean grids, estimate."""
    model = loaded.model
    crop = model.config.crop
    C, H, W = image.shape
    rgb = image.expand(3, -1, -1) if C == 1 else image
    rows, cols = _layout(W, H, crop)
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
    return coefs, mean_y, mean_c, (rows, cols)


def encode(image: torch.Tensor, model: str = DEFAULT_MODEL, quality: int = DEFAULT_QUALITY) -> bytes:
    """Compress a float image ``(C, H, W)`` in ``[0, 1]`` (C = 1 or 3) to ``.clg`` bytes."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ConfigurationError("the neural codec takes a (1 or 3, H, W) float image")
    C, H, W = image.shape
    if H * W > MAX_PIXELS:
        raise ConfigurationError(f"image of {W}x{H} exceeds the pixel limit")
    loaded = load_named_model(model_name(model, quality))
    coefs, mean_y, mean_c, grid = analyse(image.float(), loaded)
    values, tables = _coefficient_sequence(loaded.model, *_coefficient_grids(loaded.model, coefs, grid))
    coef_bytes = table_coding.encode_in_order(values, tables, loaded.coef_tables)
    mean_bytes = table_coding.encode_in_order(*_mean_sequence(loaded.model, mean_y, mean_c), loaded.mean_tables)
    payload = bytearray()
    table_coding.put_varint(payload, len(coef_bytes))
    payload = bytes(payload) + coef_bytes + mean_bytes
    params = {"payload_version": PAYLOAD_VERSION, "model": loaded.name, "model_digest": loaded.digest}
    return pack(ContainerHeader("neural", W, H, C, params), payload)


def _symbols_per_crop(model: NeuralCollageCodec) -> int:
    return (model.luma_op.num_ranges * model.luma_op.num_candidates
            + 2 * model.chroma_op.num_ranges * model.chroma_op.num_candidates)


def estimate_bits(image: torch.Tensor, model: str = DEFAULT_MODEL, quality: int = DEFAULT_QUALITY) -> float:
    """Ideal code length (bits) of the payload's symbols under the model's integer tables."""
    loaded = load_named_model(model_name(model, quality))
    coefs, mean_y, mean_c, grid = analyse(image.float(), loaded)
    values, tables = _coefficient_sequence(loaded.model, *_coefficient_grids(loaded.model, coefs, grid))
    return loaded.coef_tables.bits(values, tables) + loaded.mean_tables.bits(*_mean_sequence(loaded.model, mean_y, mean_c))


# ----------------------------------------------------------------------------- decoder
def config_from_params(params: dict) -> dict:
    """Validate a file's params (``FormatError`` on anything unexpected)."""
    if set(params) != {"payload_version", "model", "model_digest"}:
        raise FormatError(f"neural file params must be payload_version, model, model_digest; got {sorted(params)}")
    if params["payload_version"] != PAYLOAD_VERSION:
        raise FormatError(f"unsupported neural payload version {params['payload_version']!r}")
    name = params["model"]
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise FormatError(f"unknown neural model {name!r}")
    if not isinstance(params["model_digest"], str):
        raise FormatError("bad model digest")
    return dict(params)


def decode_code(header: ContainerHeader, payload: bytes, params: dict):
    """Entropy-decode a payload: (loaded model, integer coefficients, mean grids, crop grid)."""
    try:
        loaded = load_named_model(params["model"])
    except ConfigurationError as exc:
        raise FormatError(str(exc)) from None
    if loaded.digest != params["model_digest"]:
        raise FormatError(f"the file was made with other weights for model {params['model']!r} "
                          f"(digest {params['model_digest']}, this build has {loaded.digest})")
    model = loaded.model
    crop = model.config.crop
    rows, cols = _layout(header.width, header.height, crop)
    n_crops = rows * cols
    length, used = table_coding.read_varint(payload, "coefficient stream length")
    if used + length > len(payload):
        raise FormatError("neural payload truncated")
    shape_y = (rows * crop // RANGE, cols * crop // RANGE)
    shape_c = (shape_y[0] // model.chroma_factor, shape_y[1] // model.chroma_factor)
    total = n_crops * _symbols_per_crop(model)
    decoder = table_coding.InOrderDecoder(payload[used:used + length], loaded.coef_tables, max_symbols=total)
    luma, chroma = _decode_coefficients(model, decoder, shape_y, shape_c)
    decoder.finish()
    coefs = _grids_to_coefficients(model, luma, chroma)
    ny, nc = shape_y[0] * shape_y[1], shape_c[0] * shape_c[1]
    decoder = table_coding.InOrderDecoder(payload[used + length:], loaded.mean_tables, max_symbols=ny + 2 * nc)
    mean_y, mean_c = _decode_means(model, decoder, shape_y, shape_c)
    decoder.finish()
    levels = model.config.mean_levels
    if mean_y.min() < 0 or mean_y.max() > levels or mean_c.min() < 0 or mean_c.max() > levels:
        raise FormatError("decoded range means fall outside [0, 255]")
    return loaded, coefs, mean_y, mean_c, (rows, cols)


def reconstruct(loaded: LoadedModel, coefs: np.ndarray, mean_y: np.ndarray, mean_c: np.ndarray,
                grid: tuple[int, int], scale: int = 1, return_trajectory: bool = False):
    """Decode integer codes to the padded RGB image ``(1, 3, s·rows·crop, s·cols·crop)`` in [0, 1]."""
    model = loaded.model
    n = grid[0] * grid[1]
    Ry, Dy = model.luma_op.num_ranges, model.luma_op.num_candidates
    Rc, Dc = model.chroma_op.num_ranges, model.chroma_op.num_candidates
    per = coefs.reshape(n, -1)
    q_y = per[:, : Ry * Dy].reshape(n, 1, Ry, Dy).float()
    q_c = per[:, Ry * Dy:].reshape(n, 2, Rc, Dc).float()
    my = torch.from_numpy(mean_y).float()[None, None]
    mc = torch.from_numpy(mean_c).float()[None]
    with torch.no_grad():
        code_y, code_c = model.codes(q_y, q_c, my, mc)
        if return_trajectory:
            return model.synthesize(code_y, code_c, 1, grid, scale=scale, trajectory=True)
        return model.synthesize(code_y, code_c, 1, grid, scale=scale), None


def decode_parts(header: ContainerHeader, payload: bytes, params: dict, scale: int = 1,
                 return_trajectory: bool = False):
    """Decode a validated header and payload at integer ``scale`` (see ``codecs.decompress``)."""
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
        raise ConfigurationError(f"scale must be an integer in [1, {MAX_SCALE}], got {scale!r}")
    if scale * scale * header.width * header.height > MAX_PIXELS:
        raise ConfigurationError(f"decoding {header.width}x{header.height} at scale {scale} exceeds the pixel limit")
    if header.channels not in (1, 3):
        raise FormatError(f"neural files hold 1 or 3 channels, not {header.channels}")
    loaded, coefs, mean_y, mean_c, grid = decode_code(header, payload, params)
    image, frames = reconstruct(loaded, coefs, mean_y, mean_c, grid, scale, return_trajectory)

    def finish(x):
        x = x[0, :, : scale * header.height, : scale * header.width]
        if header.channels == 1:
            x = x[:1]
        return (x.clamp(0, 1) * 255).round() / 255

    if return_trajectory:
        return finish(image), [finish(f) for f in frames]
    return finish(image)


def decode(data: bytes, scale: int = 1) -> torch.Tensor:
    header, payload = unpack(data)
    if header.codec != "neural":
        raise FormatError(f"not a neural file (codec {header.codec!r})")
    return decode_parts(header, payload, config_from_params(header.params), scale)
