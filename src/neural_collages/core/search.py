"""Exhaustive search for the best single candidate of every range (classic fractal encoding).

For a range ``y`` and a candidate ``x`` (both ``n`` pixels) the least-squares affine fit
``y ≈ s·x + o`` with ``|s| ≤ s_max`` has error ``S_yy − 2 s S_xy + s² S_xx`` (centred sums) at
``s = clamp(S_xy / S_xx)``. ``S_xy`` for every (range, candidate) pair is one matrix product of
the centred range and candidate blocks, so the exact search runs at matrix-multiply speed. The
product is computed in chunks so memory stays bounded whatever the image size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .codes import SparseCode, check_s_max
from ..errors import ConfigurationError
from .operator import CollageOperator

#: Called with the number of ranges just searched (e.g. ``tqdm(...).update``).
Progress = Callable[[int], object]

#: Elements of one (ranges × candidates) tile: 1M floats = 4 MB, small enough to stay in cache.
DEFAULT_CHUNK_ELEMENTS = 1 << 20


@dataclass
class SearchResult:
    """The best candidate per range, as a sparse code, with its least-squares error."""

    code: SparseCode  # k = 1
    error: torch.Tensor  # (B, Cw, R): squared error of the affine fit, summed over pixels (and channels)


def _centred(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks (G, N, Cg, P) -> per-channel means (G, N, Cg) and centred blocks flattened (G, N, Cg·P)."""
    mean = blocks.mean(dim=-1)
    return mean, (blocks - mean.unsqueeze(-1)).flatten(-2)


def clamped_gain(correlation: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """Error removed by the best ``|s| ≤ s_max`` fit: ``c²``, or ``L·(2|c| − L)`` once clamped.

    ``correlation`` is ``|<y, x̂>|`` and ``limit`` is ``L = s_max·|x|``, elementwise.
    """
    return torch.where(correlation <= limit, correlation * correlation, limit * (2 * correlation - limit))


def _fast_best(y: torch.Tensor, xn_t: torch.Tensor, tile: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of ``y``, the candidate with the largest ``|<y, x̂_d>|``, that signed value, and
    every tile's largest ``|<y, x̂_d>|`` ``(R, tiles)``.

    Index-free reductions are several times faster than ``max(dim)`` with indices on CPU, so the
    tile pass only keeps each row's best value per tile; the winning tile of each row is
    multiplied again (one tile per row) to recover the index.
    """
    R = y.shape[0]
    D = xn_t.shape[1]
    starts = list(range(0, D, tile))
    tile_max = torch.empty(len(starts), R, dtype=y.dtype)  # rows contiguous for out=
    for t, d0 in enumerate(starts):
        g = y @ xn_t[:, d0 : d0 + tile]
        torch.amax(g.abs_(), dim=1, out=tile_max[t])
    tile_max = tile_max.T
    best, best_tile = tile_max.max(dim=1)
    index = torch.zeros(R, dtype=torch.long)
    signed = torch.zeros(R, dtype=y.dtype)
    for t in torch.unique(best_tile).tolist():
        rows = (best_tile == t).nonzero()[:, 0]
        g = y[rows] @ xn_t[:, starts[t] : starts[t] + tile]
        i = g.abs().argmax(dim=1)
        index[rows] = i + starts[t]
        signed[rows] = g.gather(1, i[:, None])[:, 0]
    return index, signed, tile_max


def _clamped_refine(
    y: torch.Tensor,
    xn_t: torch.Tensor,
    norm: torch.Tensor,
    s_max: float,
    start: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    tile: int,
    tile_max: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact clamped search for rows whose max-correlation winner needed clamping.

    A candidate with correlation ``c = <y, x̂>`` and norm ``ν`` removes ``G = c²`` of the error
    when ``|c| ≤ s_max·ν`` and ``G = s_max·ν·(2|c| − s_max·ν)`` once ``s`` is clamped. Candidates are sorted by norm, so a tile's ``ν`` lies in ``[ν_lo, ν_hi]`` and, with
    its largest ``|c|`` = ``m`` from the first pass, no candidate of the tile removes more than
    ``s_max·ν*·(2m − s_max·ν*)`` with ``ν* = min(ν_hi, m / s_max)``. Only tiles whose bound beats
    a row's best gain so far are multiplied again for that row, and scored exactly.
    """
    best_idx, best_s, best_gain = (t.clone() for t in start)
    D = xn_t.shape[1]
    for t, d0 in enumerate(range(0, D, tile)):
        nu_tile = norm[d0 : d0 + tile]
        m = tile_max[:, t]
        nu_star = torch.minimum(nu_tile[-1].expand_as(m), m / s_max)
        bound = s_max * nu_star * (2 * m - s_max * nu_star)
        rows = (bound > best_gain).nonzero()[:, 0]
        if rows.numel() == 0:
            continue
        c = y[rows] @ xn_t[:, d0 : d0 + tile]
        a = c.abs()
        limit = s_max * nu_tile
        gain = clamped_gain(a, limit)
        row_best, col = gain.max(dim=1)
        improved = row_best > best_gain[rows]
        if not bool(improved.any()):
            continue
        r = rows[improved]
        col = col[improved]
        c_best = c[improved].gather(1, col[:, None])[:, 0]
        nu = nu_tile[col]
        best_idx[r] = col + d0
        best_s[r] = (c_best / nu).clamp(-s_max, s_max)
        best_gain[r] = row_best[improved]
    return best_idx, best_s, best_gain


def best_affine_matches(
    ranges: torch.Tensor,
    candidates: torch.Tensor,
    s_max: float,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every range, the candidate with the least clamped affine-fit error (exact).

    ``ranges`` is ``(R, n)`` and ``candidates`` ``(D, n)``, both already centred. Returns
    ``(index, scale, error)``, each of shape ``(R,)``.

    Two passes keep it at matrix-multiply speed. The unclamped optimum of a candidate removes
    ``<y, x̂>²`` of the error (``x̂`` the normalised candidate), an upper bound of what it removes
    with ``|s|`` clamped; so the candidate with the largest ``|<y, x̂>|`` is exactly optimal
    whenever its own ``s`` needs no clamping. One product and a max/min per tile find it. Only
    ranges whose winner needs clamping are searched again with the clamped gain. ``progress`` is
    called with the number of ranges done after every tile.
    """
    # The search itself needs no contraction; codecs with centred maps use bounds above 1.
    if not 0 < s_max < 4:
        raise ConfigurationError(f"s_max must lie in (0, 4), got {s_max}")
    R, n = ranges.shape
    D = candidates.shape[0]
    if D == 0:
        raise ConfigurationError("no candidates to search")
    syy = ranges.pow(2).sum(1)
    sxx = candidates.pow(2).sum(1)
    # Candidates in increasing norm (stable): the clamped pass bounds whole tiles by their norms.
    order = torch.argsort(sxx, stable=True)
    candidates = candidates[order]
    sxx = sxx[order]
    flat = sxx <= 1e-12
    norm = sxx.sqrt()
    # Flat candidates (zero variance) can only be used with s = 0: a zero normalised vector.
    inv_norm = torch.where(flat, torch.zeros_like(norm), 1.0 / norm.clamp(min=1e-30))
    xn_t = (candidates * inv_norm[:, None]).T.contiguous()
    # Tiles of about 256 ranges x 4096 candidates keep the product in cache (measured: a
    # 1024-row tile is several times slower per element on this kind of CPU).
    tile_d = max(1, min(D, chunk_elements // max(1, min(R, 256))))
    tile_r = max(1, min(R, chunk_elements // tile_d))
    index = torch.zeros(R, dtype=torch.long)
    scale = torch.zeros(R, dtype=ranges.dtype)
    gain = torch.zeros(R, dtype=ranges.dtype)
    for r0 in range(0, R, tile_r):
        y = ranges[r0 : r0 + tile_r]
        idx, val, tile_max = _fast_best(y, xn_t, tile_d)
        s = val * inv_norm[idx]
        g = val * val
        clamped = s.abs() > s_max
        if bool(clamped.any()):
            rows = clamped.nonzero()[:, 0]
            nu = norm[idx[rows]]
            s_c = s[rows].clamp(-s_max, s_max)
            start = (idx[rows], s_c, s_c.abs() * (2 * val[rows].abs() * nu - s_c.abs() * nu * nu))
            idx[rows], s[rows], g[rows] = _clamped_refine(y[rows], xn_t, norm, s_max, start, tile_d, tile_max[rows])
        index[r0 : r0 + tile_r], scale[r0 : r0 + tile_r], gain[r0 : r0 + tile_r] = idx, s, g
        if progress is not None:
            progress(y.shape[0])
    return order[index], scale, (syy - gain).clamp(min=0)


def exhaustive_search(
    op: CollageOperator,
    image: torch.Tensor,
    s_max: float | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    progress: Progress | None = None,
) -> SearchResult:
    """Fit a k=1 :class:`SparseCode` to ``image`` (B, C, H, W) by exact exhaustive search.

    Each range gets the candidate (domain cell × isometry, or aux patch) and scale
    ``|s| ≤ s_max`` (default ``op.s_max``) minimising the squared error of ``s·candidate + o``;
    with shared maps the scale is shared by the channels and the offset is per channel.
    The result is a contractive code whose fixed point approximates ``image`` (collage theorem).
    ``progress`` is called with the number of ranges done as the search advances.
    """
    s_max = op.s_max if s_max is None else check_s_max(s_max)
    cands = op.candidates(image).detach()  # (B, C, D, P)
    ranges = op.ranges(image).detach()  # (B, C, R, P)
    B, C, D, P = cands.shape
    R = ranges.shape[2]
    groups = C if op.channel_maps == "per_channel" else 1
    cg = C // groups
    # (B, G, N, Cg, P): the channels searched jointly sit together.
    cands_g = cands.reshape(B, groups, cg, D, P).transpose(2, 3)
    ranges_g = ranges.reshape(B, groups, cg, R, P).transpose(2, 3)
    cand_mean, cand_c = _centred(cands_g)
    range_mean, range_c = _centred(ranges_g)
    index = torch.empty(B, groups, R, dtype=torch.long)
    scale = torch.empty(B, groups, R, dtype=image.dtype)
    error = torch.empty(B, groups, R, dtype=image.dtype)
    for b in range(B):
        for g in range(groups):
            index[b, g], scale[b, g], error[b, g] = best_affine_matches(
                range_c[b, g], cand_c[b, g], s_max, chunk_elements, progress=progress
            )
    # Offset per channel: o = mean(y) − s · mean(x) of the chosen candidate.
    chosen_mean = torch.gather(cand_mean, 2, index.unsqueeze(-1).expand(B, groups, R, cg))  # (B, G, R, Cg)
    bias = range_mean - scale.unsqueeze(-1) * chosen_mean
    bias = bias.permute(0, 1, 3, 2).reshape(B, C, R)
    code = SparseCode(index.unsqueeze(-1), scale.unsqueeze(-1), bias)
    return SearchResult(code, error)
