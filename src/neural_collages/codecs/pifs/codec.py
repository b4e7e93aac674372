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
``rate_distortion.py`` (decisions), ``bitstream.py`` (symbols ↔ payload), this module (the
codec's entry points, registered as ``"pifs"``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from tqdm.auto import tqdm

from ...coding.container import ContainerHeader, pack, unpack
from ...coding.streams import encode_streams
from ...core.deblock import border_masks, deblock_borders
from ...core.quadtree import QuadtreeCollage
from ...errors import ConfigurationError, FormatError
from ...imaging.colour import planes_to_rgb_in_strips, ycbcr_to_rgb
from ..base import MAX_SCALE, check_decode_scale, check_output_dtype, register, to_8bit_levels
from .analysis import LevelAnalysis, analyse, count_blocks, plane_layouts
from .bitstream import decode_planes, plane_symbols, stream_specs
from .config import DEBLOCK_PRESETS, DEFAULT_QUALITY, QUALITY_LAMBDAS, PifsConfig
from .rate_distortion import RateModel, decide_quadtree, rates_from_symbols

__all__ = ["PifsCodec", "PifsConfig", "encode", "encode_analysed", "analyse", "decode", "decode_parts", "MAX_SCALE"]


def encode(image: torch.Tensor, config: PifsConfig | None = None, progress: bool = False,
           search: str = "exhaustive") -> bytes:
    """Compress a float image ``(C, H, W)`` in ``[0, 1]`` (C = 1 or 3) to ``.clg`` bytes (``progress``: a tqdm bar).

    ``search``: ``"exhaustive"`` (every domain) or ``"fast"`` (short lists from an index, cost
    linear in the pixels; see :func:`analyse`). Either way the file is an ordinary file.
    """
    config = config or PifsConfig()
    if not progress:
        return encode_analysed(image, analyse(image, config, search=search), config)
    total = count_blocks(image.shape[2], image.shape[1], image.shape[0], config) if image.dim() == 3 else None
    with tqdm(total=total, desc=f"pifs search ({search})", unit="block", leave=False) as bar:
        analyses = analyse(image, config, progress=bar.update, search=search)
    return encode_analysed(image, analyses, config)


def encode_analysed(image: torch.Tensor, analyses: list[list[LevelAnalysis]], config: PifsConfig,
                    lam: float | None = None, choose_deblock: bool = True) -> bytes:
    """Rate–distortion decisions and entropy coding at ``config.quality`` (see :func:`analyse`).

    ``lam`` replaces the quality's Lagrange multiplier (an encoder choice the decoder never needs:
    files record the quantisation, not λ), for rate control between the quality levels. With
    ``choose_deblock`` the file names the deblocking preset that decodes it best at 1x (PSNR;
    ties keep it off); without, it keeps ``config.deblock``.
    """
    C, H, W = image.shape
    layouts = plane_layouts(W, H, C, config)
    lam = config.lam if lam is None else float(lam)
    lams = [lam if l.name == "y" else lam * config.chroma_weight for l in layouts]
    rates = RateModel.initial(config)
    symbols = []
    for _ in range(2):  # decide, measure symbol statistics, decide again with them
        symbols = []
        for a, layout, lam in zip(analyses, layouts, lams):
            tree, fractal = decide_quadtree(a, layout.padded, config, lam, rates)
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
    payload = encode_streams(stream_specs(layouts, config), values)
    if choose_deblock:
        config = replace(config, deblock=best_deblock(image, W, H, C, payload, config))
    header = ContainerHeader("pifs", W, H, C, config.to_params())
    return pack(header, payload)


def best_deblock(image: torch.Tensor, width: int, height: int, channels: int, payload: bytes,
                 config: PifsConfig) -> int:
    """The deblocking preset (0: none) whose 1x decode of ``payload`` is closest to ``image`` (MSE)."""
    planes = _decoded_planes(width, height, channels, payload, config, 1)
    header = ContainerHeader("pifs", width, height, channels, config.to_params())
    target = to_8bit_levels(image.to(torch.float32), 255.0)
    best, best_err = 0, None
    masks = [_masks(tree, z.shape[-2:], config, 1) for z, tree, _ in planes]  # once, not per preset
    for preset in (0, *DEBLOCK_PRESETS):
        filtered = [_deblocked(z, layout, config, preset, 1, False, m) for (z, _, layout), m in zip(planes, masks)]
        err = float((_planes_to_image(filtered, header, 1) - target).double().pow(2).sum())
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
    plane = z[0, 0]
    if preset:
        width, alpha, threshold = DEBLOCK_PRESETS[preset]
        plane = deblock_borders(plane, masks, scale, config.block_sizes[-1], width, alpha, threshold,
                                in_place=in_place)
    return plane[: scale * layout.size[0], : scale * layout.size[1]]


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
    paths = []  # per plane: the iterates (only the last one unless return_trajectory), deblocked
    decoded = _decoded_planes(header.width, header.height, header.channels, payload, config, scale,
                              return_trajectory)
    for iterates, tree, layout in decoded:
        iterates = iterates if return_trajectory else [iterates]
        masks = _masks(tree, iterates[-1].shape[-2:], config, scale) if config.deblock else None
        paths.append([_deblocked(it, layout, config, config.deblock, scale, True, masks) for it in iterates])
    del decoded
    frames = [_planes_to_image(list(planes), header, scale, dtype) for planes in zip(*paths)]
    return (frames[-1], frames) if return_trajectory else frames[-1]


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
