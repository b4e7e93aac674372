"""The collage step: validate a code, precompute its gather indices, apply it.

:func:`prepare` turns a code into a :class:`PreparedCode` for one scale (done once per decode),
and :func:`apply_prepared` is one application of the operator: pool the image into the flat
buffer, gather the picked candidates, multiply-add. Dense codes contract all candidates with a
batched matmul; sparse codes gather only their ``k`` picks per range and never form a
range × candidate matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..errors import CodeError
from .codes import Code, DenseCode, SparseCode

if TYPE_CHECKING:
    from .operator import CollageOperator


@dataclass
class PreparedCode:
    """A validated code with the gather indices one scale needs (from :func:`prepare`)."""

    kind: str  # "dense" or "sparse"
    scale: int
    code: Code
    index: torch.Tensor | None = None  # sparse: (B, k, C, N) positions in the flat pooled buffer
    scales: torch.Tensor | None = None  # sparse: (B, k, Cw, N) weight of each output pixel
    pixel_range: torch.Tensor | None = None  # sparse: (N,) range of each output pixel
    positions: torch.Tensor | None = None  # sparse on a range subset: (N,) raster positions written
    domain: torch.Tensor | None = None  # centred sparse: (B, Cw, R, k) domain cell of each pick, -1 for aux
    bias_index: torch.Tensor | None = None  # sparse: (B·C·N,) position of each pixel's bias in the flat (B, C, R) bias


def check_subset(op: CollageOperator, ranges) -> torch.Tensor | None:
    """``ranges`` if it is ``None`` or a valid 1-D int64 tensor of distinct range numbers."""
    if ranges is None:
        return None
    if not isinstance(ranges, torch.Tensor) or ranges.dtype != torch.long or ranges.dim() != 1:
        raise CodeError("ranges must be a 1-D int64 tensor of range numbers")
    if ranges.numel() and (int(ranges.min()) < 0 or int(ranges.max()) >= op.num_ranges):
        raise CodeError(f"range numbers must lie in [0, {op.num_ranges})")
    if torch.unique(ranges).numel() != ranges.numel():
        raise CodeError("range numbers must not repeat")
    return ranges


def validate_code(op: CollageOperator, code: Code, ranges: torch.Tensor | None = None) -> None:
    """Raise :class:`CodeError` unless ``code`` fits ``op`` (on the range subset ``ranges``)."""
    C, Cw, D = op.channels, op.weight_channels, op.num_candidates
    R = op.num_ranges if ranges is None else ranges.numel()
    if isinstance(code, DenseCode):
        if ranges is not None:
            raise CodeError("range subsets are supported for sparse codes only")
        w, b = code.weights, code.bias
        if not (isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor)):
            raise CodeError("a DenseCode holds tensors")
        B = b.shape[0] if b.dim() == 3 else -1
        if w.dim() != 4 or tuple(w.shape) != (B, Cw, R, D):
            raise CodeError(f"dense weights must have shape (B, {Cw}, {R}, {D}), got {tuple(w.shape)}")
        tensors = (w, b)
    elif isinstance(code, SparseCode):
        i, s, b = code.index, code.scale, code.bias
        if not all(isinstance(t, torch.Tensor) for t in (i, s, b)):
            raise CodeError("a SparseCode holds tensors")
        B = b.shape[0] if b.dim() == 3 else -1
        if i.dim() != 4 or i.shape[:3] != (B, Cw, R) or i.shape[3] < 1:
            raise CodeError(f"sparse index must have shape (B, {Cw}, {R}, k>=1), got {tuple(i.shape)}")
        if s.shape != i.shape:
            raise CodeError(f"sparse scale shape {tuple(s.shape)} differs from index shape {tuple(i.shape)}")
        if i.dtype != torch.long:
            raise CodeError(f"sparse index must be int64, got {i.dtype}")
        if i.numel() and (int(i.min()) < 0 or int(i.max()) >= D):
            raise CodeError(f"sparse index out of range [0, {D})")
        tensors = (s, b)
    else:
        raise CodeError(f"expected a DenseCode or SparseCode, got {type(code).__name__}")
    if b.dim() != 3 or tuple(b.shape[1:]) != (C, R):
        raise CodeError(f"bias must have shape (B, {C}, {R}), got {tuple(b.shape)}")
    if not all(t.is_floating_point() for t in tensors):
        raise CodeError("code weights and biases must be floating point")


def prepare(op: CollageOperator, code: Code, scale: int, ranges: torch.Tensor | None = None) -> PreparedCode:
    """Validate ``code`` and precompute what repeated steps at ``scale`` need."""
    ranges = check_subset(op, ranges)
    validate_code(op, code, ranges)
    if isinstance(code, DenseCode):
        return PreparedCode("dense", scale, code)
    device = code.bias.device
    tables = op.tables(scale, device)
    B, Cw, R, k = code.index.shape
    C = op.channels
    P = op.range_pixels(scale)
    if ranges is None:
        # Gather indices straight into image raster order: a step is then pool -> one
        # gather and one multiply-add per pick, with no reshuffling afterwards.
        order = tables.range_pixel_order
        pixel_range = order // P
        positions = None
    else:
        order = None
        pixel_range = torch.arange(R, device=device).repeat_interleave(P)
        positions = tables.subset_positions(ranges)  # int64: index_copy_ takes no other index type
    idx = tables.rows(code.index)  # (B, Cw, R, k, P)
    idx = idx.permute(0, 1, 3, 2, 4).reshape(B, Cw, k, R * P)
    if order is not None:
        idx = idx[..., order]
    # index_select on the flattened buffer is several times faster than torch.gather on CPU:
    # fold the (batch, channel) offset of each buffer plane into the index.
    L = tables.buffer_length
    plane = (torch.arange(B, device=device)[:, None] * C + torch.arange(C, device=device)[None, :]) * L
    idx = idx.expand(B, C, k, -1) + plane[:, :, None, None]
    if B * C * L < 2**31:
        idx = idx.to(torch.int32)
    idx = idx.transpose(1, 2).contiguous()  # (B, k, C, N): one contiguous index per pick
    scales = code.scale.transpose(2, 3)[..., pixel_range].transpose(1, 2).contiguous()  # (B, k, Cw, N)
    domain = None
    if op.centred:
        n_dom = op.num_candidates - op.num_aux
        domain = torch.where(code.index < n_dom, code.index // len(op.isometries or [0]), -1)
    # Per-pixel biases by one flat gather: index_select along dim 2 of a (B, C, R) tensor
    # is ~20x slower on CPU than on a flat vector (measured).
    bias_index = (torch.arange(B * C, device=device)[:, None] * R + pixel_range[None, :]).reshape(-1)
    if B * C * R < 2**31:
        bias_index = bias_index.to(torch.int32)
    return PreparedCode("sparse", scale, code, idx, scales, pixel_range, positions, domain, bias_index)


def apply_prepared(
    op: CollageOperator,
    z: torch.Tensor,
    prepared: PreparedCode,
    out: torch.Tensor | None = None,
    buffer: torch.Tensor | None = None,
    means: torch.Tensor | None = None,
) -> torch.Tensor:
    """One step with a code from :func:`prepare`.

    For a code on a range subset, ``out`` is the image whose other pixels are kept; the subset's
    pixels are replaced (in place when no gradient is being recorded). ``buffer`` (``op.pooled_buffer(z)``)
    and ``means`` (``op.domain_means(buffer)``) may be passed in when several subsets of one step
    share them, so that they are computed once per step, not once per subset.
    """
    scale, code = prepared.scale, prepared.code
    op.check_image(z, scale)
    if z.shape[0] != code.batch_size:
        raise CodeError(f"image batch {z.shape[0]} differs from code batch {code.batch_size}")
    B, C = z.shape[:2]
    sH, sW = scale * op.size[0], scale * op.size[1]
    if prepared.kind == "dense":
        return dense_step(op, z, code, scale)
    if buffer is None:
        buffer = op.pooled_buffer(z, scale)  # (B, C, L)
    constant = code.bias  # (B, C, R)
    if prepared.domain is not None:
        constant = constant - picked_means(op, buffer, prepared, scale, means)
    values = torch.index_select(constant.reshape(-1), 0, prepared.bias_index).reshape(B, C, -1)
    flat = buffer.reshape(-1)
    for j in range(prepared.index.shape[1]):
        picked = torch.index_select(flat, 0, prepared.index[:, j].reshape(-1)).reshape(B, C, -1)
        # Separate multiply and add (no fused multiply-add): every op is correctly rounded
        # IEEE arithmetic, so decoding is bit-exact across machines and thread counts.
        values = values + picked * prepared.scales[:, j]
    if prepared.positions is None:
        return values.reshape(B, C, sH, sW)
    if out is None:
        raise CodeError("a code on a range subset needs the image to write into (out=...)")
    op.check_image(out, scale)
    if torch.is_grad_enabled() and (values.requires_grad or out.requires_grad):
        return out.reshape(B, C, -1).index_copy(2, prepared.positions, values).reshape(out.shape)
    out.reshape(B, C, -1).index_copy_(2, prepared.positions, values)
    return out


def picked_means(
    op: CollageOperator, buffer: torch.Tensor, prepared: PreparedCode, scale: int, means: torch.Tensor | None = None
) -> torch.Tensor:
    """``Σ_j s_j · mean(candidate_j)`` per range, ``(B, C, R)``, for centred sparse codes."""
    code = prepared.code
    B, C = buffer.shape[:2]
    if means is None:
        means = op.domain_means(buffer, scale)  # (B, C, Nd)
    if op.num_aux:
        means = torch.cat([means, buffer.new_zeros(B, C, 1)], dim=2)  # aux patches are centred already
    domain = torch.where(prepared.domain < 0, means.shape[2] - 1, prepared.domain)  # (B, Cw, R, k)
    total = None
    for j in range(code.k):
        mean_j = torch.gather(means, 2, domain[..., j].expand(B, C, -1))
        term = mean_j * code.scale[..., j]
        total = term if total is None else total + term
    return total


#: Output values (B·C·pixels) above which a step without gradients is computed a band of range
#: rows at a time, written straight into the image: the whole-image way holds two image-sized
#: temporaries (the ranges, then their assembly), 1.6 GB for a 2^26-pixel RGB output.
DENSE_BAND_VALUES = 1 << 23


def dense_step(op: CollageOperator, z: torch.Tensor, code: DenseCode, scale: int) -> torch.Tensor:
    """One step with a dense code: ``weights @ candidates + bias`` per range."""
    buffer = op.pooled_buffer(z, scale, include_aux=False)
    B, C = z.shape[:2]
    if torch.is_grad_enabled() or B * C * z.shape[2] * z.shape[3] <= DENSE_BAND_VALUES:
        return op.assemble(_dense_ranges(op, buffer, code, scale)(code.weights, code.bias), scale)
    image = z.new_empty(z.shape)
    for top, band in dense_bands(op, buffer, code, scale):
        image[:, :, top : top + band.shape[2]] = band
    return image


def dense_bands(op: CollageOperator, buffer: torch.Tensor, code: DenseCode, scale: int):
    """The banded form of :func:`dense_step`: yields ``(first row, band (B, C, rows, s·W))`` top to bottom.

    ``buffer`` is ``op.pooled_buffer(z, scale, include_aux=False)``, all that a step reads of its
    input ``z``, so a caller can iterate on it without keeping whole images. Bands are whole range
    rows, about :data:`DENSE_BAND_VALUES` values each.
    """
    ranges = _dense_ranges(op, buffer, code, scale)
    B, C = buffer.shape[:2]
    rows, cols = op.range_grid.grid
    ph, pw = scale * op.range_size[0], scale * op.range_size[1]
    band = max(1, DENSE_BAND_VALUES // (B * C * cols * ph * pw))
    for a in range(0, rows, band):
        b = min(rows, a + band)
        part = ranges(code.weights[:, :, a * cols : b * cols], code.bias[:, :, a * cols : b * cols])
        yield a * ph, part.reshape(B, C, b - a, cols, ph, pw).permute(0, 1, 2, 4, 3, 5).reshape(
            B, C, (b - a) * ph, cols * pw)


def _dense_ranges(op: CollageOperator, buffer: torch.Tensor, code: DenseCode, scale: int):
    """``(weights, bias) -> (B, C, r, P)``: the ranges of a slice of the code, from the pooled buffer."""
    # Domain candidates are gathered per image; auxiliary patches are the same for every
    # image, so their contribution is one broadcast matmul instead of B copies.
    n_dom = op.num_candidates - op.num_aux
    cand = aux = None
    if n_dom:
        cand = buffer[:, :, op.candidate_rows(scale, buffer.device, n_dom)]  # (B, C, D_dom, P)
        if op.centred:
            means = op.domain_means(buffer, scale).repeat_interleave(len(op.isometries), dim=2)
            cand = cand - means.unsqueeze(-1)
    if op.num_aux:
        aux = op.aux_at_scale(scale, buffer.dtype).to(buffer.device)

    def ranges(weights: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:  # (B, C, r, P)
        out = bias.unsqueeze(-1)
        if cand is not None:
            out = torch.matmul(weights[..., :n_dom], cand) + out
        if aux is not None:
            out = torch.matmul(weights[..., n_dom:], aux) + out
        return out

    return ranges
