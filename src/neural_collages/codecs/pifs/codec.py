"""The fractal (PIFS) image codec: exact exhaustive search, rate–distortion quadtree, entropy-coded files.

Encoding, per colour plane (luma at full resolution, chroma 4:2:0 at half):

1. For every block size of the quadtree (e.g. 32, 16, 8, 4 px) and every block, the exact best
   domain (twice the block, on a lattice, under the 8 isometries) for a *centred* affine map
   ``block ≈ s·(domain − mean domain) + m`` (``core/search.py``), with ``s`` then
   quantised to ``2·s_levels + 1`` values in ``[−s_max, s_max]``. ``s = 0`` is a *flat* block:
   it sends only its mean.
2. A bottom-up rate–distortion pruning of the quadtree: each block is a leaf (fractal or flat,
   whichever has the lower ``D + λ·R``) or splits into four, whichever is cheaper. The quality
   level sets ``λ``; chroma uses ``λ·chroma_weight``. Bit costs come from the symbol statistics
   of a first pass, then decisions are made again with them.
3. Block means are coded as DPCM residuals, predicted from the already coded neighbours above
   and to the left (integers, step ``mean_step``), so decoding is exact integer arithmetic there.
4. Symbols (split flags, quantised scales per level, isometries, domain numbers per level, mean
   residuals) are range-coded with ``constriction`` (``coding/streams.py``) into the
   payload of a ``.clg`` container (``coding/container.py``).

Decoding rebuilds the quadtree and the sparse codes and iterates a :class:`QuadtreeCollage` (the
project's :class:`CollageOperator` on range subsets) a fixed number of steps from a blank image,
at any integer scale. Everything on the decoding path is elementwise IEEE arithmetic in a fixed
order, so decoded images are bit-identical across runs, thread counts and machines.

Files by job: ``config.py`` (settings, params), ``analysis.py`` (geometry, search),
``rate_distortion.py`` (decisions), ``bitstream.py`` (symbols ↔ payload), ``residual.py`` and
``residual_encoder.py`` (the DCT residual layer), ``zoom.py`` (s× decodes of version-4 files),
this module (the codec's entry points, registered as ``"pifs"``).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
from tqdm.auto import tqdm

from ...coding.container import ContainerHeader, pack, unpack
from ...coding.streams import encode_streams
from ...coding.varints import ByteReader, put_varint, read_varint
from ...core.deblock import border_masks, deblock_borders
from ...core.quadtree import QuadtreeCollage
from ...errors import ConfigurationError, FormatError
from ...imaging.colour import planes_to_rgb_in_strips, ycbcr_to_rgb
from ..base import MAX_SCALE, check_decode_scale, check_output_dtype, register, to_8bit_levels
from . import residual as residual_layer
from .residual_encoder import ResidualSource, encode_residual
from .zoom import detail_zoom
from .analysis import LevelAnalysis, analyse, count_blocks, image_planes, plane_layouts
from .bitstream import decode_planes, plane_symbols, stream_specs
from .config import DEBLOCK_PRESETS, DEFAULT_QUALITY, MAX_RESIDUAL_QUARTERS, QUALITY_LAMBDAS, PifsConfig
from .rate_distortion import RateModel, decide_quadtree, rates_from_symbols

__all__ = ["PifsCodec", "PifsConfig", "encode", "encode_analysed", "analyse", "decode", "decode_parts", "MAX_SCALE"]


def encode(image: torch.Tensor, config: PifsConfig | None = None, progress: bool = False,
           search: str = "exhaustive", residual: bool = True) -> bytes:
    """Compress a float image ``(C, H, W)`` in ``[0, 1]`` (C = 1 or 3) to ``.clg`` bytes (``progress``: a tqdm bar).

    ``search``: ``"exhaustive"`` (every domain) or ``"fast"`` (short lists from an index, cost
    linear in the pixels; see :func:`analyse`). Either way the file is an ordinary file.
    ``residual``: let the encoder add a residual layer where it lowers the RD cost.
    """
    config = config or PifsConfig()
    if not progress:
        return encode_analysed(image, analyse(image, config, search=search), config, residual=residual)
    total = count_blocks(image.shape[2], image.shape[1], image.shape[0], config) if image.dim() == 3 else None
    with tqdm(total=total, desc=f"pifs search ({search})", unit="block", leave=False) as bar:
        analyses = analyse(image, config, progress=bar.update, search=search)
    return encode_analysed(image, analyses, config, residual=residual)


#: Residual candidates the encoder tries at a quality of Lagrange multiplier λ: the fractal part
#: coded at λ·m for each m here, and the residual layer at luma steps k·√λ for each k (the high-rate
#: optimum of a uniform quantiser is √(λ / (ln 2 / 6)) ≈ 2.94·√λ). It keeps the candidate with the
#: lowest D + λ·R (D: RGB squared error / 3, R: file bits), the fractal file alone among them.
#: Above SHORTCUT_PIXELS, where each fractal decode and deblocking search costs seconds, the
#: multiplier 2 is tried only if a layer won at λ, with λ's deblocking preset.
FRACTAL_LAMBDA_MULTIPLIERS = (1.0, 2.0)
SHORTCUT_PIXELS = 2_000_000
RESIDUAL_STEP_FACTORS = (2.94, 2.4, 3.6)
#: Chroma steps are this fraction of luma's (chroma errors weigh more in RGB, as ``chroma_weight``).
RESIDUAL_CHROMA_RATIO = 0.5
#: Rounding of the residual quantiser before the RD optimisation moves values towards zero.
RESIDUAL_ROUNDING = 0.5
#: Rate–distortion optimised quantisation of the residual (``residual_encoder.rd_optimise``).
RESIDUAL_RDO = True


def encode_analysed(image: torch.Tensor, analyses: list[list[LevelAnalysis]], config: PifsConfig,
                    lam: float | None = None, choose_deblock: bool = True, residual: bool = True) -> bytes:
    """Rate–distortion decisions and entropy coding at ``config.quality`` (see :func:`analyse`).

    ``lam`` replaces the quality's Lagrange multiplier (an encoder choice the decoder never needs:
    files record the quantisation, not λ), for rate control between the quality levels. With
    ``choose_deblock`` the file names the deblocking preset that decodes it best at 1x (PSNR;
    ties keep it off); without, it keeps ``config.deblock``. With ``residual`` the encoder also
    tries residual layers (:data:`FRACTAL_LAMBDA_MULTIPLIERS`) and keeps the best by RD cost.
    """
    C, H, W = image.shape
    layouts = plane_layouts(W, H, C, config)
    lam = config.lam if lam is None else float(lam)
    if not (choose_deblock or residual):
        return pack(ContainerHeader("pifs", W, H, C, config.to_params()), _fractal_payload(analyses, layouts, config,
                                                                                         lam))
    target = to_8bit_levels(image.to(torch.float32), 255.0, dtype=torch.uint8)
    large = H * W > SHORTCUT_PIXELS
    targets = image_planes(image.clamp(0, 1), layouts) if residual else None
    best = None  # (D + λR, file, has a residual layer)
    for index, multiplier in enumerate(FRACTAL_LAMBDA_MULTIPLIERS if residual else (1.0,)):
        if best is not None and not best[2] and large:
            break  # a large image whose layer did not pay at λ: at a coarser fractal part it would not either
        payload = _fractal_payload(analyses, layouts, config, lam * multiplier)
        again = index == 0 or not large  # a deblocking search per fractal part, but one on large images
        cfg, planes = _deblock_choice(image, payload, config if again else replace(config, deblock=cfg.deblock),
                                      choose_deblock and again)
        header = ContainerHeader("pifs", W, H, C, cfg.to_params())
        if not residual:
            return pack(header, payload)
        scoring = (layouts, header, target, lam)
        if multiplier == 1.0:  # the fractal file alone only at the quality's own λ
            best = _better(best, pack(header, payload), planes, False, *scoring)
        source = ResidualSource.of(targets, planes, [l.size for l in layouts])
        for factor in RESIDUAL_STEP_FACTORS:
            data, rebuilt = _with_residual(payload, cfg, planes, source, (W, H, C), factor * math.sqrt(lam), lam)
            best = _better(best, data, rebuilt, True, *scoring)
    return best[1]


def _better(best, data: bytes, planes, layered: bool, layouts, header: ContainerHeader, target: torch.Tensor,
            lam: float):
    """``best`` or ``(cost, data, layered)``, whichever has the lower ``D + λ·R`` (D: RGB squared
    error / 3 of the candidate's decode ``planes`` against the 8-bit ``target``; R: its bits); ties
    keep ``best``."""
    cost = _squared_error(_planes_to_image(_cropped(planes, layouts), header, 1, torch.uint8), target) / 3.0
    cost += lam * 8 * len(data)
    return best if best is not None and best[0] <= cost else (cost, data, layered)


def _squared_error(a: torch.Tensor, b: torch.Tensor) -> int:
    """The exact sum of squared differences of two 8-bit images: a histogram of ``|a − b|`` (no
    widening of the whole image; three times faster than squaring in int32 at 12 MP)."""
    counts = torch.bincount((torch.maximum(a, b) - torch.minimum(a, b)).reshape(-1), minlength=256)
    return int((counts * torch.arange(256, dtype=torch.int64).square()).sum())


def _fractal_payload(analyses, layouts, config: PifsConfig, lam: float) -> bytes:
    """The fractal streams of a file at Lagrange multiplier ``lam``."""
    lams = [lam if l.name == "y" else lam * config.chroma_weight for l in layouts]
    rates = RateModel.initial(config)
    symbols = []
    for _ in range(2):  # decide, measure symbol statistics, decide again with them
        symbols = []
        for a, layout, plane_lam in zip(analyses, layouts, lams):
            tree, fractal = decide_quadtree(a, layout.padded, config, plane_lam, rates)
            symbols.append(plane_symbols(tree, fractal, a, config))
        rates = rates_from_symbols(symbols, config)
    values = {}
    for s, layout in zip(symbols, layouts):
        p = layout.name
        values[f"{p}.split"] = np.asarray(s.flags, dtype=np.int64)
        for level in range(len(config.block_sizes)):
            values[f"{p}.s{level}"] = np.asarray(s.scales[level], dtype=np.int64)
            values[f"{p}.dom{level}"] = np.asarray(s.domains[level], dtype=np.int64)
        values[f"{p}.iso"] = np.asarray(s.isometries, dtype=np.int64)
        values[f"{p}.mean"] = np.asarray(s.means, dtype=np.int64)
    return encode_streams(stream_specs(layouts, config), values)


def _with_residual(payload: bytes, config: PifsConfig, planes, source: ResidualSource, size, luma_step: float,
                   lam: float):
    """A file of ``payload`` plus a residual layer at ``luma_step``, and its decoded padded planes."""
    luma = min(MAX_RESIDUAL_QUARTERS, max(1, round(4 * luma_step)))
    chroma = min(MAX_RESIDUAL_QUARTERS, max(1, round(4 * luma_step * RESIDUAL_CHROMA_RATIO)))
    lambdas = (lam, lam * config.chroma_weight) if RESIDUAL_RDO else None
    section, steps, rebuilt = encode_residual(source, luma, chroma, RESIDUAL_ROUNDING, lambdas)
    cfg = replace(config, residual_luma=steps.luma_quarters, residual_chroma=steps.chroma_quarters,
                  residual_bias=steps.bias)
    framed = bytearray()
    put_varint(framed, len(payload))
    header = ContainerHeader("pifs", *size, cfg.to_params())
    return pack(header, bytes(framed) + payload + section), [p + r for p, r in zip(planes, rebuilt)]


def _cropped(planes, layouts):
    return [p[: l.size[0], : l.size[1]] for p, l in zip(planes, layouts)]


def _deblock_choice(image: torch.Tensor, payload: bytes, config: PifsConfig, choose: bool):
    """The config naming the deblocking preset (the best at 1x if ``choose``) and the padded 1x planes
    it decodes to."""
    C, H, W = image.shape
    planes = _decoded_planes(W, H, C, payload, config, 1)
    masks = [_masks(tree, z.shape[-2:], config, 1) for z, tree, _ in planes]  # once, not per preset
    preset = best_deblock(image, planes, masks, config) if choose else config.deblock
    config = replace(config, deblock=preset)
    return config, [_deblocked_padded(z, config, preset, 1, m) for (z, _, _), m in zip(planes, masks)]


def best_deblock(image: torch.Tensor, planes, masks, config: PifsConfig) -> int:
    """The deblocking preset (0: none) whose 1x decode of ``planes`` (:func:`_decoded_planes`) is
    closest to ``image`` (MSE)."""
    C, H, W = image.shape
    header = ContainerHeader("pifs", W, H, C, config.to_params())
    target = to_8bit_levels(image.to(torch.float32), 255.0, dtype=torch.uint8)
    best, best_err = 0, None
    for preset in (0, *DEBLOCK_PRESETS):
        filtered = [_deblocked(z, layout, config, preset, 1, False, m) for (z, _, layout), m in zip(planes, masks)]
        err = _squared_error(_planes_to_image(filtered, header, 1, torch.uint8), target)
        if best_err is None or err < best_err:
            best, best_err = preset, err
    return best


def _decoded_planes(width, height, channels, payload, config, scale, return_trajectory=False):
    """Per plane: the iterates (the last one only unless ``return_trajectory``), quadtree, layout."""
    out = []
    with torch.no_grad():
        for plane in decode_planes(width, height, channels, payload, config):
            qt = QuadtreeCollage(plane.layout.padded, config.block_sizes, config.domain_strides)
            z, stats = qt.decode(plane.tree, plane.codes, scale=scale, steps=config.decode_steps,
                                 return_trajectory=return_trajectory)
            out.append((stats.trajectory if return_trajectory else z, plane.tree, plane.layout))
    return out


def _masks(tree, shape, config: PifsConfig, scale: int):
    """The quadtree's block borders (:func:`~neural_collages.core.deblock.border_masks`) for an ``s×`` plane."""
    leaves = [(leaf.y, leaf.x, config.block_sizes[leaf.level]) for leaf in tree.leaves]
    return border_masks(leaves, (shape[0] // scale, shape[1] // scale), config.block_sizes[-1])


def _deblocked(z: torch.Tensor, layout, config: PifsConfig, preset: int, scale: int, in_place: bool, masks):
    """A plane ``(1, 1, s·H, s·W)`` iterate, deblocked by ``preset`` along ``masks`` (:func:`_masks`;
    unused when ``preset`` is 0) and cropped to the plane's size."""
    plane = _deblocked_padded(z, config, preset, scale, masks, in_place)
    return plane[: scale * layout.size[0], : scale * layout.size[1]]


def _deblocked_padded(z: torch.Tensor, config: PifsConfig, preset: int, scale: int, masks, in_place: bool = False):
    plane = z[0, 0]
    if preset:
        width, alpha, threshold = DEBLOCK_PRESETS[preset]
        plane = deblock_borders(plane, masks, scale, config.block_sizes[-1], width, alpha, threshold,
                                in_place=in_place)
    return plane


def decode(data: bytes, scale: int = 1) -> torch.Tensor:
    """Decode ``.clg`` bytes of the PIFS codec to a float image ``(C, s·H, s·W)`` in ``[0, 1]``."""
    header, payload = unpack(data)
    if header.codec != "pifs":
        raise FormatError(f"not a PIFS file (codec {header.codec!r})")
    config = PifsConfig.from_params(header.params)
    return decode_parts(header, payload, config, scale)


def decode_parts(
    header: ContainerHeader, payload: bytes, config: PifsConfig, scale: int = 1, return_trajectory: bool = False,
    dtype: torch.dtype = torch.float32,
):
    """Decode a validated header and payload at ``scale``.

    Returns the image ``(C, s·H, s·W)`` in ``[0, 1]`` (8-bit values; 0–255 as ``dtype`` uint8), or
    with ``return_trajectory`` a pair ``(image, frames)`` where ``frames`` are the images after 0, 1, …
    decoding steps from the blank start (for animations).
    """
    scale = check_decode_scale(scale, header)
    check_output_dtype(dtype)
    payload, section = _split_payload(payload, config)
    deblocked = []  # per plane: the padded iterates (only the last one unless return_trajectory), deblocked
    decoded = _decoded_planes(header.width, header.height, header.channels, payload, config, scale,
                              return_trajectory)
    for iterates, tree, _ in decoded:
        iterates = iterates if return_trajectory else [iterates]
        masks = _masks(tree, iterates[-1].shape[-2:], config, scale) if config.deblock else None
        deblocked.append([_deblocked_padded(it, config, config.deblock, scale, masks, True) for it in iterates])
    layouts = [layout for _, _, layout in decoded]
    del decoded
    zoom = scale > 1 and config.zoom_detail is not None  # version 4: interpolation plus fractal detail
    fractal_1x = None  # per plane: the padded, deblocked 1x fractal decode (every frame with a trajectory)
    if section is not None or zoom:
        fractal_1x = deblocked if scale == 1 else _fractal_planes_1x(header, payload, config, return_trajectory)
    residuals = [None] * len(layouts)
    if section is not None:  # contexts from the 1x decode
        steps = residual_layer.ResidualSteps(config.residual_luma, config.residual_chroma, config.residual_bias)
        residuals = residual_layer.decode_residual(ByteReader(section), [f[-1] for f in fractal_1x], steps)
    paths = []
    for index, (planes, layout) in enumerate(zip(deblocked, layouts)):
        planes = [p[: scale * layout.size[0], : scale * layout.size[1]] for p in planes]
        residual = residuals[index]
        for frame, plane in enumerate(planes):  # every frame: the decode had it stopped after that many steps
            if zoom:
                detail_zoom(plane, fractal_1x[index][frame], residual, scale, config.zoom_detail)
            elif residual is not None:
                residual_layer.add_upsampled(plane, residual, scale)
        paths.append(planes)
    del deblocked
    frames = [_planes_to_image(list(planes), header, scale, dtype) for planes in zip(*paths)]
    return (frames[-1], frames) if return_trajectory else frames[-1]


def _split_payload(payload: bytes, config: PifsConfig) -> tuple[bytes, bytes | None]:
    """The fractal streams and the residual section (None without a residual layer)."""
    if not config.has_residual:
        return payload, None
    length, start = read_varint(payload, 0, "fractal payload length")
    if length > len(payload) - start:
        raise FormatError("truncated PIFS payload (fractal streams)")
    return payload[start:start + length], payload[start + length:]


def _fractal_planes_1x(header, payload: bytes, config: PifsConfig, return_trajectory: bool = False):
    """Per plane: the padded, deblocked 1x fractal decode (the residual layer's contexts and the
    zoom's base), as a list of frames (the last only unless ``return_trajectory``)."""
    out = []
    for z, tree, _ in _decoded_planes(header.width, header.height, header.channels, payload, config, 1,
                                      return_trajectory):
        frames = z if return_trajectory else [z]
        masks = _masks(tree, frames[-1].shape[-2:], config, 1) if config.deblock else None
        out.append([_deblocked_padded(f, config, config.deblock, 1, masks, True) for f in frames])
    return out


#: Chroma rows converted to RGB at a time: the colour stage's temporaries stay a few strips, not
#: images (64 rows of a 13x Kodak decode: 15 MB per temporary; 256 rows made the 13x peak 0.2 GB higher).
STRIP_ROWS = 64


def _planes_to_image(planes: list[torch.Tensor], header: ContainerHeader, scale: int,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Decoded planes (8-bit units) to the RGB or grey image, converted in strips (bit-identical)."""
    H, W = scale * header.height, scale * header.width
    if header.channels == 1:
        return to_8bit_levels(planes[0][:H, :W].unsqueeze(0), dtype=dtype)
    luma, cb, cr = planes
    return planes_to_rgb_in_strips(luma, (cb, cr), (H, W), lambda ycc: to_8bit_levels(ycbcr_to_rgb(ycc), dtype=dtype),
                                   strip_rows=STRIP_ROWS, dtype=dtype)


class PifsCodec:
    """The fractal codec behind the :class:`~neural_collages.codecs.base.Codec` protocol."""

    name = "pifs"

    def qualities(self, model: str | None = None) -> tuple[int, ...]:
        if model is not None:
            raise ConfigurationError("model families apply to the neural codec only")
        return tuple(sorted(QUALITY_LAMBDAS))

    def encode(self, image: torch.Tensor, quality: int | None = None, *, model: str | None = None,
               progress: bool = False, search: str = "exhaustive") -> bytes:
        self.qualities(model)
        return encode(image, PifsConfig(quality=DEFAULT_QUALITY if quality is None else quality), progress=progress,
                      search=search)

    def config_from_params(self, params: dict) -> PifsConfig:
        return PifsConfig.from_params(params)

    def decode(self, header: ContainerHeader, payload: bytes, config: PifsConfig, scale: int = 1,
               return_trajectory: bool = False, dtype: torch.dtype = torch.float32):
        return decode_parts(header, payload, config, scale, return_trajectory, dtype)


CODEC = register(PifsCodec())
