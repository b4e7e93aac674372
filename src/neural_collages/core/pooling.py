"""Pooling: every candidate pixel a collage step reads, pooled once into a flat buffer.

A domain cell of size ``a·r`` is read at range size ``r`` by ``a×a`` average pooling. All cells
of one lattice share the pooling, so a step pools the whole image once per domain size and
gathers candidates from the result (:class:`~neural_collages.core.partitions.CandidateTables`
maps candidate pixels to buffer positions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigurationError
from .partitions import CandidateTables, DomainLattice


def average_pool(z: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """Average pooling of ``(B, C, H, W)`` images (no padding).

    Small kernels are summed from strided slices, separably: on CPU this is several times faster
    than ``F.avg_pool2d`` for the 2×2 pooling of classic fractal coding, and it is just as exact.
    """
    (ah, aw), (th, tw) = kernel, stride
    if (ah, aw) == (1, 1):
        return z
    if ah * aw > 16:
        return F.avg_pool2d(z, kernel, stride)
    H, W = z.shape[-2:]
    bh, bw = (H - ah) // th + 1, (W - aw) // tw + 1
    rows = z[..., 0 : th * (bh - 1) + 1 : th, :]
    for u in range(1, ah):
        rows = rows + z[..., u : u + th * (bh - 1) + 1 : th, :]
    out = rows[..., 0 : tw * (bw - 1) + 1 : tw]
    for v in range(1, aw):
        out = out + rows[..., v : v + tw * (bw - 1) + 1 : tw]
    return out * (1.0 / (ah * aw))


#: How auxiliary patches are resampled at scale s > 1 (both pool back to the stored patch exactly).
AUX_INTERPOLATIONS = ("nearest", "bicubic")


def aux_at_scale(
    patches: torch.Tensor, scale: int, range_size: tuple[int, int], channels: int, centred: bool, dtype,
    interpolation: str = "nearest",
) -> torch.Tensor:
    """Auxiliary patches at ``scale``: ``(C, N, P)``, upsampled by ``scale`` and pooled to the range size.

    ``"nearest"`` repeats every patch pixel ``scale × scale`` times, reading a patch exactly as a
    domain cell is read at that scale. ``"bicubic"`` interpolates the patch (edges replicated)
    and adds back, per patch pixel, what the interpolant's ``scale × scale`` average misses
    (one back-projection step), so the result pools to the stored patch exactly as well: the 1×
    decode and every scale's consistency with it are unchanged, but a zoomed decode shows
    smooth patches instead of enlarged pixels. Centred operators remove each patch's mean.
    """
    if interpolation not in AUX_INTERPOLATIONS:
        raise ConfigurationError(f"aux interpolation must be one of {AUX_INTERPOLATIONS}, got {interpolation!r}")
    patches = patches.to(dtype)
    if scale > 1 and interpolation == "bicubic":
        pad = 2  # the bicubic kernel's reach, in patch pixels
        smooth = F.interpolate(F.pad(patches, (pad,) * 4, mode="replicate"), scale_factor=scale, mode="bicubic",
                               align_corners=False)[..., pad * scale:-pad * scale, pad * scale:-pad * scale]
        missing = patches - F.avg_pool2d(smooth, scale)
        patches = smooth + missing.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    elif scale > 1:
        patches = patches.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    kh = patches.shape[-2] // (scale * range_size[0])
    kw = patches.shape[-1] // (scale * range_size[1])
    if (kh, kw) != (1, 1):
        patches = F.avg_pool2d(patches, (kh, kw))
    patches = patches.expand(-1, channels, -1, -1)
    out = patches.flatten(2).transpose(0, 1)  # (C, N, P)
    if centred:
        out = out - out.mean(dim=-1, keepdim=True)
    return out


def pooled_buffer(z: torch.Tensor, layout: CandidateTables, aux: torch.Tensor | None = None) -> torch.Tensor:
    """Flat buffer ``(B, C, L)`` of every pooled pixel a candidate can read (domains, then ``aux`` ``(C, N, P)``)."""
    B, C = z.shape[:2]
    parts = [average_pool(z, kernel, stride).flatten(2) for kernel, stride in zip(layout.pool_kernels, layout.pool_strides)]
    if aux is not None:
        parts.append(aux.reshape(1, C, -1).expand(B, -1, -1))
    if not parts:
        return z.new_zeros(B, C, 0)
    return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]


def domain_means(
    buffer: torch.Tensor,
    layout: CandidateTables,
    lattices: list[DomainLattice],
    range_size: tuple[int, int],
    scale: int = 1,
) -> torch.Tensor:
    """Mean of every domain cell's pooled block, ``(B, C, num_domains)``, from a pooled buffer.

    Summed in a fixed order (separable strided slices), so the result does not depend on the
    machine or the thread count; centred codes rely on it for bit-exact decoding.
    """
    B, C = buffer.shape[:2]
    ph, pw = scale * range_size[0], scale * range_size[1]
    means = []
    for g, lattice in enumerate(lattices):
        bh, bw = layout.buffer_shapes[g]
        plane = buffer[:, :, layout.buffer_offsets[g] : layout.buffer_offsets[g] + bh * bw].reshape(B, C, bh, bw)
        (ah, aw), (th, tw) = layout.pool_kernels[g], layout.pool_strides[g]
        dil_h, dil_w = ah // th, aw // tw
        rows, cols = lattice.grid
        # Exact divisions whenever there is more than one cell along an axis (pooled_stride).
        step_h = scale * lattice.stride[0] // th if rows > 1 else 1
        step_w = scale * lattice.stride[1] // tw if cols > 1 else 1
        span_h, span_w = step_h * (rows - 1) + 1, step_w * (cols - 1) + 1
        acc = plane[:, :, 0:span_h:step_h, :]
        for i in range(1, ph):
            acc = acc + plane[:, :, i * dil_h : i * dil_h + span_h : step_h, :]
        out = acc[..., 0:span_w:step_w]
        for j in range(1, pw):
            out = out + acc[..., j * dil_w : j * dil_w + span_w : step_w]
        means.append((out * (1.0 / (ph * pw))).flatten(2))
    if not means:
        return buffer.new_zeros(B, C, 0)
    return torch.cat(means, dim=2) if len(means) > 1 else means[0]
