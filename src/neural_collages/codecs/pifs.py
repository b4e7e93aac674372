"""The fractal (PIFS) image codec: exact exhaustive search, rate–distortion quadtree, entropy-coded files.

Encoding, per colour plane (luma at full resolution, chroma 4:2:0 at half):

1. For every block size of the quadtree (e.g. 32, 16, 8, 4 px) and every block, the exact best
   domain (twice the block, on a lattice, under the 8 isometries) for a *centred* affine map
   ``block ≈ s·(domain − mean domain) + m`` (``neural_collages.search``), with ``s`` then
   quantised to ``2·s_levels + 1`` values in ``[−s_max, s_max]``. ``s = 0`` is a *flat* block:
   it sends only its mean.
2. A bottom-up rate–distortion pruning of the quadtree: each block is a leaf (fractal or flat,
   whichever has the lower ``D + λ·R``) or splits into four, whichever is cheaper. The quality
   level sets ``λ``; chroma uses ``λ·chroma_weight``. Bit costs come from the symbol statistics
   of a first pass, then decisions are made again with them.
3. Block means are coded as DPCM residuals, predicted from the already coded neighbours above
   and to the left (integers, step ``mean_step``), so decoding is exact integer arithmetic there.
4. Symbols (split flags, quantised scales per level, isometries, domain numbers per level, mean
   residuals) are range-coded with ``constriction`` (``neural_collages.entropy``) into the
   payload of a ``.clg`` container (``neural_collages.container``).

Decoding rebuilds the quadtree and the sparse codes and iterates a :class:`QuadtreeCollage` (the
project's :class:`CollageOperator` on range subsets) a fixed number of steps from a blank image,
at any integer scale. Everything on the decoding path is elementwise IEEE arithmetic in a fixed
order, so decoded images are bit-identical across runs, thread counts and machines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..colour import downsample_2x, rgb_to_ycbcr, upsample_2x, ycbcr_to_rgb
from ..container import ContainerHeader, pack, unpack
from ..entropy import StreamSpec, decode_streams, encode_streams
from ..errors import ConfigurationError, FormatError
from ..images import MAX_PIXELS, crop_to, pad_to_multiple
from ..quadtree import Quadtree, QuadtreeCollage
from ..search import best_affine_matches

PAYLOAD_VERSION = 1
NUM_ISOMETRIES = 8

#: Lagrange multipliers of the quality levels (squared 8-bit error per bit): 1 = smallest file.
#: On Kodak they span about 0.08 to 1.1 bits per pixel.
QUALITY_LAMBDAS = {1: 3000.0, 2: 1600.0, 3: 800.0, 4: 400.0, 5: 200.0, 6: 100.0, 7: 50.0, 8: 25.0}
DEFAULT_QUALITY = 4
#: Qualities from this one up quantise scales to 31 levels and means in steps of 2 (else 15 and 3).
FINE_QUANTISATION_FROM = 7
#: Largest decode scale accepted from the command line and the library (output pixels bounded too).
MAX_SCALE = 16


@dataclass(frozen=True)
class PifsConfig:
    """Everything that defines a PIFS bitstream besides the image (stored in the file's params)."""

    quality: int = DEFAULT_QUALITY
    block_sizes: tuple[int, ...] = (32, 16, 8, 4)
    #: Domain lattice stride per block size: half the block (denser = better matches, slower).
    domain_strides: tuple[int, ...] = (16, 8, 4, 4)
    s_max: float = 1.2
    #: s is quantised to {−s_levels … s_levels} · s_max / s_levels; None: by quality (see below).
    s_levels: int | None = None
    #: Quantisation step of block means (8-bit units); None: by quality.
    mean_step: int | None = None
    chroma_weight: float = 0.25  # λ multiplier for chroma planes (4:2:0)
    decode_steps: int = 12
    #: Blocks whose variance (per pixel, 8-bit units²) is below this are coded flat without search.
    flat_variance: float = 2.0

    def __post_init__(self):
        if self.quality not in QUALITY_LAMBDAS:
            raise ConfigurationError(f"quality must be one of {sorted(QUALITY_LAMBDAS)}, got {self.quality!r}")
        # Coarser scales and means pay off at low rates, finer ones at the top qualities
        # (measured on Kodak; see docs/pifs.md).
        fine = self.quality >= FINE_QUANTISATION_FROM
        if self.s_levels is None:
            object.__setattr__(self, "s_levels", 15 if fine else 7)
        if self.mean_step is None:
            object.__setattr__(self, "mean_step", 2 if fine else 3)
        if type(self.s_levels) is not int or type(self.mean_step) is not int:
            raise ConfigurationError("s_levels and mean_step must be integers")
        sizes = self.block_sizes
        if len(sizes) != len(self.domain_strides) or not 1 <= len(sizes) <= 6:
            raise ConfigurationError("give 1-6 block sizes and one domain stride per block size")
        if sizes[-1] < 2 or sizes[0] > 128 or any(sizes[i] != 2 * sizes[i + 1] for i in range(len(sizes) - 1)):
            raise ConfigurationError(f"block sizes must halve, from at most 128 down to at least 2 px: {sizes}")
        if any(not 1 <= st <= 2 * n for st, n in zip(self.domain_strides, sizes)):
            raise ConfigurationError(f"domain strides must lie in [1, 2·block]: {self.domain_strides}")
        if not 0 < self.s_max <= 2 or not 1 <= self.s_levels <= 127:
            raise ConfigurationError("s_max must lie in (0, 2] and s_levels in [1, 127]")
        if not 1 <= self.mean_step <= 16 or not 1 <= self.decode_steps <= 64:
            raise ConfigurationError("mean_step must lie in [1, 16] and decode_steps in [1, 64]")

    @property
    def lam(self) -> float:
        return QUALITY_LAMBDAS[self.quality]

    @property
    def s_step(self) -> float:
        return self.s_max / self.s_levels

    @property
    def mean_levels(self) -> int:
        """Residuals lie in [−mean_levels, mean_levels]: enough for any 8-bit mean and prediction."""
        return -(-255 // self.mean_step)

    def to_params(self) -> dict:
        return {
            "v": PAYLOAD_VERSION,
            "quality": self.quality,
            "blocks": list(self.block_sizes),
            "strides": list(self.domain_strides),
            "s_max": self.s_max,
            "s_levels": self.s_levels,
            "mean_step": self.mean_step,
            "steps": self.decode_steps,
        }

    @classmethod
    def from_params(cls, params: dict) -> "PifsConfig":
        """Validate a file's params (hostile input): FormatError on anything unexpected."""
        expected = {"v", "quality", "blocks", "strides", "s_max", "s_levels", "mean_step", "steps"}
        if set(params) != expected:
            raise FormatError(f"PIFS params must have exactly the keys {sorted(expected)}")
        if params["v"] != PAYLOAD_VERSION:
            raise FormatError(f"unsupported PIFS payload version {params['v']!r}")

        def ints(value, name):
            if not isinstance(value, list) or not all(type(v) is int for v in value):
                raise FormatError(f"PIFS param {name} must be a list of integers")
            return tuple(value)

        try:
            if not all(type(params[k]) is int for k in ("quality", "s_levels", "mean_step", "steps")):
                raise FormatError("PIFS params quality, s_levels, mean_step and steps must be integers")
            if type(params["s_max"]) not in (int, float):
                raise FormatError("PIFS param s_max must be a number")
            return cls(
                quality=params["quality"],
                block_sizes=ints(params["blocks"], "blocks"),
                domain_strides=ints(params["strides"], "strides"),
                s_max=float(params["s_max"]),
                s_levels=params["s_levels"],
                mean_step=params["mean_step"],
                decode_steps=params["steps"],
            )
        except ConfigurationError as exc:
            raise FormatError(f"invalid PIFS params: {exc}") from None


# ----------------------------------------------------------------------------- plane geometry
@dataclass(frozen=True)
class PlaneLayout:
    """A plane's true size and its size padded to whole root blocks."""

    name: str
    size: tuple[int, int]
    padded: tuple[int, int]


def plane_layouts(width: int, height: int, channels: int, config: PifsConfig) -> list[PlaneLayout]:
    top = config.block_sizes[0]

    def padded(h: int, w: int) -> tuple[int, int]:
        return (-(-h // top) * top, -(-w // top) * top)

    if channels == 1:
        return [PlaneLayout("y", (height, width), padded(height, width))]
    even = (height + height % 2, width + width % 2)
    half = (even[0] // 2, even[1] // 2)
    return [
        PlaneLayout("y", even, padded(*even)),
        PlaneLayout("cb", half, padded(*half)),
        PlaneLayout("cr", half, padded(*half)),
    ]


def _stream_specs(layouts: list[PlaneLayout], config: PifsConfig) -> list[StreamSpec]:
    specs = []
    for layout in layouts:
        qt_ops = _level_domain_counts(layout.padded, config)
        p = layout.name
        specs.append(StreamSpec(f"{p}.split", "categorical", 2))
        for level in range(len(config.block_sizes)):
            specs.append(StreamSpec(f"{p}.s{level}", "categorical", 2 * config.s_levels + 1, -config.s_levels))
        specs.append(StreamSpec(f"{p}.iso", "categorical", NUM_ISOMETRIES))
        for level, count in enumerate(qt_ops):
            # A level whose domains do not fit has no fractal blocks: an empty one-symbol stream.
            specs.append(StreamSpec(f"{p}.dom{level}", "uniform", max(1, count)))
        specs.append(StreamSpec(f"{p}.mean", "categorical", 2 * config.mean_levels + 1, -config.mean_levels))
    return specs


def _level_domain_counts(size: tuple[int, int], config: PifsConfig) -> list[int]:
    H, W = size
    return [
        ((H - 2 * n) // st + 1) * ((W - 2 * n) // st + 1) if 2 * n <= min(H, W) else 0
        for n, st in zip(config.block_sizes, config.domain_strides)
    ]


def _usable_levels(size: tuple[int, int], config: PifsConfig) -> list[bool]:
    """A level can code fractal blocks only if its 2n domains fit in the plane."""
    return [count > 0 for count in _level_domain_counts(size, config)]


# ----------------------------------------------------------------------------- encoder
@dataclass
class LevelAnalysis:
    """Best fractal fit of every block of one level (before quantisation), and its flat alternative.

    The fit's error for any quantised scale ``s`` is ``syy − 2 s·sxy + s²·sxx``, so one search
    serves every quantisation (:meth:`quantised`).
    """

    mean: torch.Tensor  # (R,) block means
    scale: torch.Tensor  # (R,) optimal clamped scale of the best candidate (0 where not searched)
    candidate: torch.Tensor  # (R,) candidate number (domain · 8 + isometry)
    syy: torch.Tensor  # (R,) squared error of the mean alone (the flat leaf)
    sxy: torch.Tensor  # (R,) centred cross product with the chosen candidate
    sxx: torch.Tensor  # (R,) centred energy of the chosen candidate
    num_domains: int

    def quantised(self, config: "PifsConfig") -> tuple[torch.Tensor, torch.Tensor]:
        """Scale levels ``q`` (0 = flat) and the squared error of the quantised fit."""
        q = torch.round(self.scale / config.s_step).clamp(-config.s_levels, config.s_levels)
        s = q * config.s_step
        err = (self.syy - 2 * s * self.sxy + s * s * self.sxx).clamp(min=0)
        return q.long(), err


def analyse_plane(plane: torch.Tensor, qt: QuadtreeCollage, config: PifsConfig, progress=None) -> list[LevelAnalysis]:
    """Search every level of the quadtree for one padded plane ``(H, W)`` in 8-bit units."""
    x = plane.reshape(1, 1, *plane.shape)
    usable = _usable_levels(plane.shape, config)
    out = []
    for level, op in enumerate(qt.operators):
        ranges = op.ranges(x)[0, 0]
        mean = ranges.mean(dim=-1)
        centred = ranges - mean[:, None]
        syy = centred.pow(2).sum(-1)
        R, P = centred.shape
        scale = torch.zeros(R, dtype=centred.dtype)
        candidate = torch.zeros(R, dtype=torch.long)
        sxy = torch.zeros(R, dtype=centred.dtype)
        sxx = torch.zeros(R, dtype=centred.dtype)
        active = (syy > config.flat_variance * P).nonzero()[:, 0] if usable[level] else torch.zeros(0, dtype=torch.long)
        if active.numel():
            cands = op.candidates(x)[0, 0].detach()
            idx, s, _ = best_affine_matches(centred[active], cands, config.s_max, progress=progress)
            chosen = cands[idx]
            scale[active], candidate[active] = s, idx
            sxy[active] = (centred[active] * chosen).sum(-1)
            sxx[active] = chosen.pow(2).sum(-1)
            del cands, chosen
        if progress is not None:
            progress.update(R - active.numel())
        out.append(LevelAnalysis(mean, scale, candidate, syy, sxy, sxx, op.num_domains))
    return out


@dataclass
class RateModel:
    """Approximate bit costs for the rate–distortion decisions."""

    scale_bits: list[torch.Tensor]  # per level: bits of each quantised-scale symbol (index q + s_levels)
    iso_bits: float = 3.0
    mean_bits: float = 4.0
    flag_bits: float = 1.0

    @classmethod
    def initial(cls, config: PifsConfig) -> "RateModel":
        bits = torch.full((2 * config.s_levels + 1,), 5.0)
        bits[config.s_levels] = 1.5
        return cls([bits.clone() for _ in config.block_sizes])


def _bits_from_counts(counts: np.ndarray, floor: float = 0.5) -> torch.Tensor:
    total = counts.sum()
    if total == 0:
        return torch.full((len(counts),), 8.0)
    probs = (counts + floor) / (total + floor * len(counts))
    return torch.from_numpy(-np.log2(probs)).float()


def decide_quadtree(
    analyses: list[LevelAnalysis], size: tuple[int, int], config: PifsConfig, lam: float, rates: RateModel
):
    """Bottom-up RD pruning. Returns the tree and, per level, whether each block is coded fractal."""
    levels = len(config.block_sizes)
    H, W = size
    fractal = []
    leaf_cost = []
    for level, a in enumerate(analyses):
        n = config.block_sizes[level]
        q, err_fractal = a.quantised(config)
        sym = q + config.s_levels
        dom_bits = math.log2(a.num_domains) if a.num_domains > 1 else 0.0
        j_fractal = err_fractal + lam * (rates.scale_bits[level][sym] + rates.iso_bits + dom_bits + rates.mean_bits)
        j_flat = a.syy + lam * (rates.scale_bits[level][config.s_levels] + rates.mean_bits)
        use = (q != 0) & (j_fractal < j_flat)
        cost = torch.where(use, j_fractal, j_flat)
        if level < levels - 1:
            cost = cost + lam * rates.flag_bits
        fractal.append(use.reshape(H // n, W // n))
        leaf_cost.append(cost.reshape(H // n, W // n))
    split = [None] * levels
    best = leaf_cost[-1]
    for level in range(levels - 2, -1, -1):
        h, w = leaf_cost[level].shape
        children = best.reshape(h, 2, w, 2).sum(dim=(1, 3)) + lam * rates.flag_bits
        split[level] = children < leaf_cost[level]
        best = torch.where(split[level], children, leaf_cost[level])
    split_np = [s.numpy() if s is not None else None for s in split]

    def do_split(level: int, y: int, x: int) -> bool:
        n = config.block_sizes[level]
        return bool(split_np[level][y // n, x // n])

    tree = Quadtree.from_split(size, config.block_sizes, do_split)
    return tree, fractal


def _mean_prediction(mean_map: np.ndarray, cell: int, y: int, x: int, n: int) -> int:
    """Rounded average of the coded means directly above and to the left of a block (128 if none)."""
    cy, cx, cn = y // cell, x // cell, n // cell
    total, count = 0, 0
    if cy > 0:
        row = mean_map[cy - 1, cx : cx + cn]
        total += int(row.sum())
        count += cn
    if cx > 0:
        col = mean_map[cy : cy + cn, cx - 1]
        total += int(col.sum())
        count += cn
    return (total + count // 2) // count if count else 128


@dataclass
class PlaneSymbols:
    tree: Quadtree
    flags: list[int]
    scales: list[list[int]]  # per level, leaves of that level in coding order
    domains: list[list[int]]  # per level, fractal leaves only
    isometries: list[int]  # fractal leaves in coding order
    means: list[int]  # residuals, leaves in coding order
    mean_values: list[int] = field(default_factory=list)  # decoded means, coding order


def plane_symbols(tree: Quadtree, fractal, analyses: list[LevelAnalysis], config: PifsConfig) -> PlaneSymbols:
    """Symbols of a decided quadtree, with closed-loop DPCM of the means (as the decoder will see them)."""
    H, W = tree.image_size
    cell = config.block_sizes[-1]
    mean_map = np.zeros((H // cell, W // cell), dtype=np.int64)
    levels = len(config.block_sizes)
    scales: list[list[int]] = [[] for _ in range(levels)]
    domains: list[list[int]] = [[] for _ in range(levels)]
    isos: list[int] = []
    residuals: list[int] = []
    values: list[int] = []
    step, limit = config.mean_step, config.mean_levels
    quantised = [a.quantised(config)[0] for a in analyses]
    for leaf in tree.leaves:
        n = config.block_sizes[leaf.level]
        r = (leaf.y // n) * (W // n) + leaf.x // n
        a = analyses[leaf.level]
        if bool(fractal[leaf.level][leaf.y // n, leaf.x // n]):
            q = int(quantised[leaf.level][r])
            cand = int(a.candidate[r])
            domains[leaf.level].append(cand // NUM_ISOMETRIES)
            isos.append(cand % NUM_ISOMETRIES)
        else:
            q = 0
        scales[leaf.level].append(q)
        pred = _mean_prediction(mean_map, cell, leaf.y, leaf.x, n)
        residual = int(np.clip(np.round((float(a.mean[r]) - pred) / step), -limit, limit))
        value = pred + residual * step
        residuals.append(residual)
        values.append(value)
        mean_map[leaf.y // cell : (leaf.y + n) // cell, leaf.x // cell : (leaf.x + n) // cell] = value
    return PlaneSymbols(tree, tree.split_flags(), scales, domains, isos, residuals, values)


def _rates_from_symbols(symbols: list[PlaneSymbols], config: PifsConfig) -> RateModel:
    levels = len(config.block_sizes)
    k = 2 * config.s_levels + 1
    scale_bits = []
    for level in range(levels):
        counts = np.zeros(k)
        for s in symbols:
            np.add.at(counts, np.asarray(s.scales[level], dtype=np.int64) + config.s_levels, 1)
        scale_bits.append(_bits_from_counts(counts))
    mean_counts = np.zeros(2 * config.mean_levels + 1)
    iso_counts = np.zeros(NUM_ISOMETRIES)
    flags = np.zeros(2)
    for s in symbols:
        np.add.at(mean_counts, np.asarray(s.means, dtype=np.int64) + config.mean_levels, 1)
        np.add.at(iso_counts, np.asarray(s.isometries, dtype=np.int64), 1)
        np.add.at(flags, np.asarray(s.flags, dtype=np.int64), 1)
    p_mean = mean_counts / max(1.0, mean_counts.sum())
    mean_bits = float(-(p_mean[p_mean > 0] * np.log2(p_mean[p_mean > 0])).sum()) if mean_counts.sum() else 4.0
    p_iso = iso_counts / max(1.0, iso_counts.sum())
    iso_bits = float(-(p_iso[p_iso > 0] * np.log2(p_iso[p_iso > 0])).sum()) if iso_counts.sum() else 3.0
    p_flag = flags / max(1.0, flags.sum())
    flag_bits = float(-(p_flag[p_flag > 0] * np.log2(p_flag[p_flag > 0])).sum()) if flags.sum() else 1.0
    return RateModel(scale_bits, iso_bits=iso_bits, mean_bits=max(mean_bits, 0.5), flag_bits=max(flag_bits, 0.2))


def _image_planes(image: torch.Tensor, layouts: list[PlaneLayout]) -> list[torch.Tensor]:
    """Float planes in 8-bit units, padded to whole root blocks."""
    x = image.to(torch.float32) * 255.0
    if len(layouts) == 1:
        planes = [x[0]]
    else:
        even = layouts[0].size
        x, _ = pad_to_multiple(x.unsqueeze(0), 2)
        ycc = rgb_to_ycbcr(x[0])
        planes = [ycc[0], downsample_2x(ycc[1]), downsample_2x(ycc[2])]
        assert planes[0].shape == even
    out = []
    for plane, layout in zip(planes, layouts):
        padded, _ = pad_to_multiple(plane.reshape(1, 1, *plane.shape), tuple(
            layout.padded[i] if layout.padded[i] > plane.shape[i] else plane.shape[i] for i in range(2)))
        out.append(padded[0, 0, : layout.padded[0], : layout.padded[1]].contiguous())
    return out


def encode(image: torch.Tensor, config: PifsConfig | None = None, progress: bool = False) -> bytes:
    """Compress a float image ``(C, H, W)`` in ``[0, 1]`` (C = 1 or 3) to ``.clg`` bytes."""
    config = config or PifsConfig()
    return encode_analysed(image, analyse(image, config, progress), config)


def analyse(image: torch.Tensor, config: PifsConfig, progress: bool = False) -> list[list[LevelAnalysis]]:
    """The quality-independent part of encoding: the exact search of every plane and level.

    :func:`encode_analysed` turns it into a file for any quality with the same geometry, so a
    sweep over qualities searches once.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ConfigurationError("expected an image tensor of shape (1 or 3, H, W)")
    C, H, W = image.shape
    if H * W > MAX_PIXELS or min(H, W) < 1 or max(H, W) > 65535:
        raise ConfigurationError(f"image size {W}x{H} is outside what the codec handles")
    layouts = plane_layouts(W, H, C, config)
    planes = _image_planes(image.clamp(0, 1), layouts)
    total = sum(
        sum((l.padded[0] // n) * (l.padded[1] // n) for n in config.block_sizes) for l in layouts
    )
    bar = tqdm(total=total, desc="pifs search", unit="block", disable=not progress, leave=False)
    analyses = []
    with bar, torch.no_grad():
        for plane, layout in zip(planes, layouts):
            qt = QuadtreeCollage(layout.padded, config.block_sizes, config.domain_strides)
            analyses.append(analyse_plane(plane, qt, config, progress=bar))
    return analyses


def encode_analysed(image: torch.Tensor, analyses: list[list[LevelAnalysis]], config: PifsConfig) -> bytes:
    """Rate–distortion decisions and entropy coding at ``config.quality`` (see :func:`analyse`)."""
    C, H, W = image.shape
    layouts = plane_layouts(W, H, C, config)
    lams = [config.lam if l.name == "y" else config.lam * config.chroma_weight for l in layouts]
    rates = RateModel.initial(config)
    symbols = []
    for _ in range(2):  # decide, measure symbol statistics, decide again with them
        symbols = []
        for a, layout, lam in zip(analyses, layouts, lams):
            tree, fractal = decide_quadtree(a, layout.padded, config, lam, rates)
            symbols.append(plane_symbols(tree, fractal, a, config))
        rates = _rates_from_symbols(symbols, config)
    values = {}
    for s, layout in zip(symbols, layouts):
        p = layout.name
        values[f"{p}.split"] = np.asarray(s.flags, dtype=np.int64)
        for level in range(len(config.block_sizes)):
            values[f"{p}.s{level}"] = np.asarray(s.scales[level], dtype=np.int64)
            values[f"{p}.dom{level}"] = np.asarray(s.domains[level], dtype=np.int64)
        values[f"{p}.iso"] = np.asarray(s.isometries, dtype=np.int64)
        values[f"{p}.mean"] = np.asarray(s.means, dtype=np.int64)
    payload = encode_streams(_stream_specs(layouts, config), values)
    header = ContainerHeader("pifs", W, H, C, config.to_params())
    return pack(header, payload)


def config_from_params(params: dict) -> PifsConfig:
    """The codec's settings from a file's params (``FormatError`` on anything invalid)."""
    return PifsConfig.from_params(params)


# ----------------------------------------------------------------------------- decoder
def _max_symbols(layouts: list[PlaneLayout], config: PifsConfig) -> int:
    total = 0
    for layout in layouts:
        blocks = sum((layout.padded[0] // n) * (layout.padded[1] // n) for n in config.block_sizes)
        leaves = (layout.padded[0] // config.block_sizes[-1]) * (layout.padded[1] // config.block_sizes[-1])
        total += blocks + 5 * leaves  # flags + (scale, isometry, domain, mean) per leaf, generous
    return total + 64


def decode_planes(header: ContainerHeader, payload: bytes, config: PifsConfig):
    """Entropy-decode and validate every plane: (layout, tree, per-level sparse codes)."""
    from ..codes import SparseCode

    layouts = plane_layouts(header.width, header.height, header.channels, config)
    specs = _stream_specs(layouts, config)
    streams = decode_streams(specs, payload, max_symbols=_max_symbols(layouts, config))
    levels = len(config.block_sizes)
    out = []
    for layout in layouts:
        p = layout.name
        tree = Quadtree.from_split_flags(layout.padded, config.block_sizes, streams[f"{p}.split"].tolist())
        usable = _usable_levels(layout.padded, config)
        scales = [streams[f"{p}.s{level}"] for level in range(levels)]
        domains = [streams[f"{p}.dom{level}"] for level in range(levels)]
        isos = streams[f"{p}.iso"]
        residuals = streams[f"{p}.mean"]
        if len(residuals) != len(tree.leaves):
            raise FormatError(f"plane {p}: {len(residuals)} means for {len(tree.leaves)} blocks")
        # Means: DPCM in coding order, integer arithmetic.
        H, W = layout.padded
        cell = config.block_sizes[-1]
        mean_map = np.zeros((H // cell, W // cell), dtype=np.int64)
        means = np.empty(len(tree.leaves), dtype=np.int64)
        for i, leaf in enumerate(tree.leaves):
            n = config.block_sizes[leaf.level]
            value = _mean_prediction(mean_map, cell, leaf.y, leaf.x, n) + int(residuals[i]) * config.mean_step
            means[i] = value
            mean_map[leaf.y // cell : (leaf.y + n) // cell, leaf.x // cell : (leaf.x + n) // cell] = value
        # Candidates: walk the leaves in coding order; fractal leaves take the next isometry
        # (one stream for all levels) and the next domain of their level.
        counts = [0] * levels
        for leaf in tree.leaves:
            counts[leaf.level] += 1
        for level in range(levels):
            if len(scales[level]) != counts[level]:
                raise FormatError(f"plane {p}: level {level} has {counts[level]} blocks but {len(scales[level])} scales")
            if not usable[level] and bool((scales[level] != 0).any()):
                raise FormatError(f"plane {p}: level {level} cannot have fractal blocks in a plane this small")
        cands = [np.zeros(counts[level], dtype=np.int64) for level in range(levels)]
        level_pos = [0] * levels
        dom_pos = [0] * levels
        iso_pos = 0
        for leaf in tree.leaves:
            level = leaf.level
            j = level_pos[level]
            level_pos[level] += 1
            if scales[level][j] == 0:
                continue
            if iso_pos >= len(isos) or dom_pos[level] >= len(domains[level]):
                raise FormatError(f"plane {p}: more fractal blocks than coded domains or isometries")
            cands[level][j] = int(domains[level][dom_pos[level]]) * NUM_ISOMETRIES + int(isos[iso_pos])
            dom_pos[level] += 1
            iso_pos += 1
        if iso_pos != len(isos) or any(dom_pos[l] != len(domains[l]) for l in range(levels)):
            raise FormatError(f"plane {p}: coded domains or isometries left over")
        leaf_means = [[] for _ in range(levels)]
        for leaf, value in zip(tree.leaves, means.tolist()):
            leaf_means[leaf.level].append(value)
        sparse = []
        for level in range(levels):
            R = counts[level]
            if R == 0:
                sparse.append(None)
                continue
            index = torch.from_numpy(cands[level]).reshape(1, 1, R, 1)
            q = scales[level].astype(np.float32) * np.float32(config.s_step)
            scale = torch.from_numpy(q).reshape(1, 1, R, 1)
            bias = torch.tensor(leaf_means[level], dtype=torch.float32).reshape(1, 1, R)
            sparse.append(SparseCode(index, scale, bias))
        out.append((layout, tree, sparse))
    return out


def decode(data: bytes, scale: int = 1) -> torch.Tensor:
    """Decode ``.clg`` bytes of the PIFS codec to a float image ``(C, s·H, s·W)`` in ``[0, 1]``."""
    header, payload = unpack(data)
    if header.codec != "pifs":
        raise FormatError(f"not a PIFS file (codec {header.codec!r})")
    config = PifsConfig.from_params(header.params)
    return decode_parts(header, payload, config, scale)


def decode_parts(
    header: ContainerHeader, payload: bytes, config: PifsConfig, scale: int = 1, return_trajectory: bool = False
):
    """Decode a validated header and payload at ``scale``.

    Returns the image ``(C, s·H, s·W)`` in ``[0, 1]`` (8-bit values), or with
    ``return_trajectory`` a pair ``(image, frames)`` where ``frames`` are the images after 0, 1, …
    decoding steps from the blank start (for animations).
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
        raise ConfigurationError(f"scale must be an integer in [1, {MAX_SCALE}], got {scale!r}")
    if scale * scale * header.width * header.height > MAX_PIXELS:
        raise ConfigurationError(f"decoding {header.width}x{header.height} at scale {scale} exceeds the pixel limit")
    paths = []  # per plane: the iterates (only the last one unless return_trajectory)
    with torch.no_grad():
        for layout, tree, codes in decode_planes(header, payload, config):
            qt = QuadtreeCollage(layout.padded, config.block_sizes, config.domain_strides)
            z, stats = qt.decode(tree, codes, scale=scale, steps=config.decode_steps,
                                 return_trajectory=return_trajectory)
            iterates = stats.trajectory if return_trajectory else [z]
            paths.append([it[0, 0, : scale * layout.size[0], : scale * layout.size[1]] for it in iterates])
    frames = [_planes_to_image(list(planes), header, scale) for planes in zip(*paths)]
    return (frames[-1], frames) if return_trajectory else frames[-1]


def _planes_to_image(planes: list[torch.Tensor], header: ContainerHeader, scale: int) -> torch.Tensor:
    H, W = scale * header.height, scale * header.width
    if header.channels == 1:
        rgb = planes[0].unsqueeze(0)
    else:
        ycc = torch.stack([planes[0], upsample_2x(planes[1]), upsample_2x(planes[2])])
        rgb = ycbcr_to_rgb(ycc)
    rgb = rgb[:, :H, :W]
    return (rgb.clamp(0, 255).round() / 255.0).to(torch.float32)
