"""Exhaustive search for the best single candidate of every range (classic fractal encoding).

For a range ``y`` and a candidate ``x`` (both ``n`` pixels) the least-squares affine fit
``y ≈ s·x + o`` with ``|s| ≤ s_max`` has error ``S_yy − 2 s S_xy + s² S_xx`` (centred sums) at
``s = clamp(S_xy / S_xx)``. ``S_xy`` for every (range, candidate) pair is one matrix product of
the centred range and candidate blocks, so the exact search runs at matrix-multiply speed. The
product is computed in chunks so memory stays bounded whatever the image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .codes import SparseCode, _check_s_max
from .errors import ConfigurationError
from .operator import CollageOperator

#: Elements of one (ranges × candidates) score chunk: 4M floats = 16 MB keeps it cache-friendly.
DEFAULT_CHUNK_ELEMENTS = 1 << 22


@dataclass
class SearchResult:
    """The best candidate per range, as a sparse code, with its least-squares error."""

    code: SparseCode  # k = 1
    error: torch.Tensor  # (B, Cw, R): squared error of the affine fit, summed over pixels (and channels)


def _centred(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks (G, N, Cg, P) -> per-channel means (G, N, Cg) and centred blocks flattened (G, N, Cg·P)."""
    mean = blocks.mean(dim=-1)
    return mean, (blocks - mean.unsqueeze(-1)).flatten(-2)


def best_affine_matches(
    ranges: torch.Tensor,
    candidates: torch.Tensor,
    s_max: float,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    progress: tqdm | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every range, the candidate with the least clamped affine-fit error.

    ``ranges`` is ``(R, n)`` and ``candidates`` ``(D, n)``, both already centred. Returns
    ``(index, scale, error)``, each of shape ``(R,)``. Ties go to the lowest index.
    """
    s_max = _check_s_max(s_max)
    R, n = ranges.shape
    D = candidates.shape[0]
    if D == 0:
        raise ConfigurationError("no candidates to search")
    syy = ranges.pow(2).sum(1)
    sxx = candidates.pow(2).sum(1)
    # Flat candidates (zero variance) can only be used with s = 0.
    inv_sxx = torch.where(sxx > 1e-12, 1.0 / sxx.clamp(min=1e-12), torch.zeros_like(sxx))
    best_err = torch.full((R,), float("inf"), dtype=ranges.dtype)
    best_idx = torch.zeros(R, dtype=torch.long)
    best_s = torch.zeros(R, dtype=ranges.dtype)
    d_chunk = max(1, min(D, chunk_elements // max(1, min(R, 1024))))
    r_chunk = max(1, min(R, chunk_elements // d_chunk))
    for r0 in range(0, R, r_chunk):
        y = ranges[r0 : r0 + r_chunk]
        err_r = best_err[r0 : r0 + r_chunk]
        idx_r = best_idx[r0 : r0 + r_chunk]
        s_r = best_s[r0 : r0 + r_chunk]
        for d0 in range(0, D, d_chunk):
            sxy = y @ candidates[d0 : d0 + d_chunk].T  # (r, d)
            s = (sxy * inv_sxx[d0 : d0 + d_chunk]).clamp_(-s_max, s_max)
            # error = syy − 2 s sxy + s² sxx, minimised over d; syy is constant per row.
            err = s * (s * sxx[d0 : d0 + d_chunk] - 2 * sxy)
            chunk_err, chunk_arg = err.min(dim=1)
            better = chunk_err < err_r
            err_r[better] = chunk_err[better]
            idx_r[better] = chunk_arg[better] + d0
            s_r[better] = s.gather(1, chunk_arg[:, None])[:, 0][better]
        if progress is not None:
            progress.update(y.shape[0])
    return best_idx, best_s, (best_err + syy).clamp(min=0)


def exhaustive_search(
    op: CollageOperator,
    image: torch.Tensor,
    s_max: float | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    progress: bool = False,
) -> SearchResult:
    """Fit a k=1 :class:`SparseCode` to ``image`` (B, C, H, W) by exact exhaustive search.

    Each range gets the candidate (domain cell × isometry, or aux patch) and scale
    ``|s| ≤ s_max`` (default ``op.s_max``) minimising the squared error of ``s·candidate + o``;
    with shared maps the scale is shared by the channels and the offset is per channel.
    The result is a contractive code whose fixed point approximates ``image`` (collage theorem).
    ``progress`` shows a tqdm bar over the ranges searched.
    """
    s_max = op.s_max if s_max is None else _check_s_max(s_max)
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
    bar = tqdm(total=B * groups * R, desc="search", unit="range", disable=not progress, leave=False)
    with bar:
        for b in range(B):
            for g in range(groups):
                index[b, g], scale[b, g], error[b, g] = best_affine_matches(
                    range_c[b, g], cand_c[b, g], s_max, chunk_elements, progress=bar
                )
    # Offset per channel: o = mean(y) − s · mean(x) of the chosen candidate.
    chosen_mean = torch.gather(cand_mean, 2, index.unsqueeze(-1).expand(B, groups, R, cg))  # (B, G, R, Cg)
    bias = range_mean - scale.unsqueeze(-1) * chosen_mean
    bias = bias.permute(0, 1, 3, 2).reshape(B, C, R)
    code = SparseCode(index.unsqueeze(-1), scale.unsqueeze(-1), bias)
    return SearchResult(code, error)
