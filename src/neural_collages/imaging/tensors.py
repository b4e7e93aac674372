"""Image tensors: padding to a multiple, cropping back, and tiling into crops (one crop API).

:func:`to_crops` / :func:`from_crops` tile a batch whose sides are multiples of the crop size
(what networks and codecs use); :func:`split_into_crops` / :func:`stitch_crops` tile one image of
any size by padding it first and remembering the original size in a :class:`CropLayout`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import pair, positive_int
from ..errors import ConfigurationError


def empty_image(channels: int, height: int, width: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised ``(C, H, W)`` image; ``uint8`` ones are views of an ``(H, W, C)`` buffer, the
    layout image files hold, so that saving one needs no copy."""
    if dtype == torch.uint8:
        return torch.empty(height, width, channels, dtype=dtype).permute(2, 0, 1)
    return torch.empty(channels, height, width, dtype=dtype)


def _pad_index(size: int, padded: int, mode: str) -> torch.Tensor:
    idx = torch.arange(padded)
    if mode == "replicate" or size == 1:
        return idx.clamp_(max=size - 1)
    # Reflection without repeating the edge pixel, applied as often as needed: fold the index
    # into one period of length 2 * (size - 1).
    period = 2 * (size - 1)
    idx = idx % period
    return torch.where(idx >= size, period - idx, idx)


def pad_to_multiple(x: torch.Tensor, multiple, mode: str = "replicate") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` (``(C, H, W)`` or ``(B, C, H, W)``) at the bottom and right to multiples of ``multiple``.

    ``multiple`` is an int or ``(mh, mw)``; ``mode`` is ``"replicate"`` or ``"reflect"``
    (reflection is repeated when the padding exceeds the image; a 1-pixel side is replicated).
    Returns the padded tensor (``x`` itself if no padding is needed) and the original ``(H, W)``
    for :func:`crop_to`. Works for any dtype and is differentiable.
    """
    mh, mw = pair(multiple, "multiple")
    if mode not in ("replicate", "reflect"):
        raise ConfigurationError(f"pad mode must be 'replicate' or 'reflect', got {mode!r}")
    if x.ndim not in (3, 4):
        raise ConfigurationError(f"expected an image (C, H, W) or batch (B, C, H, W), got shape {tuple(x.shape)}")
    H, W = x.shape[-2:]
    if H == 0 or W == 0:
        raise ConfigurationError(f"cannot pad an empty image of shape {tuple(x.shape)}")
    ph, pw = (-H) % mh, (-W) % mw
    if ph:
        x = x.index_select(-2, _pad_index(H, H + ph, mode).to(x.device))
    if pw:
        x = x.index_select(-1, _pad_index(W, W + pw, mode).to(x.device))
    return x, (H, W)


def crop_to(x: torch.Tensor, size) -> torch.Tensor:
    """Crop the last two dimensions of ``x`` to ``size = (H, W)``, keeping the top-left corner."""
    H, W = pair(size, "size")
    if x.ndim < 2 or H > x.shape[-2] or W > x.shape[-1]:
        raise ConfigurationError(f"cannot crop a tensor of shape {tuple(x.shape)} to {H}x{W}")
    return x[..., :H, :W]


@dataclass(frozen=True)
class CropLayout:
    """How :func:`split_into_crops` tiled an image: ``grid = (rows, cols)`` of ``crop_size``
    crops covering the padded image; ``image_size`` is the original ``(H, W)``."""

    grid: tuple[int, int]
    crop_size: tuple[int, int]
    image_size: tuple[int, int]

    @property
    def num_crops(self) -> int:
        """Number of crops, ``rows * cols``."""
        return self.grid[0] * self.grid[1]


def to_crops(x: torch.Tensor, size) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B · H/ch · W/cw, C, ch, cw)`` crops, row-major per image (sides must be multiples)."""
    ch, cw = pair(size, "crop size")
    if x.ndim != 4:
        raise ConfigurationError(f"expected a batch (B, C, H, W), got shape {tuple(x.shape)}")
    B, C, H, W = x.shape
    if H % ch or W % cw:
        raise ConfigurationError(f"{H}x{W} images are not tiled by {ch}x{cw} crops (pad them first)")
    r, c = H // ch, W // cw
    return x.reshape(B, C, r, ch, c, cw).permute(0, 2, 4, 1, 3, 5).reshape(B * r * c, C, ch, cw)


def from_crops(crops: torch.Tensor, batch: int, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`to_crops` for ``batch`` images of ``grid = (rows, cols)`` crops of any size."""
    if crops.ndim != 4:
        raise ConfigurationError(f"expected crops of shape (N, C, h, w), got {tuple(crops.shape)}")
    r, c = grid
    N, C, h, w = crops.shape
    if N != batch * r * c:
        raise ConfigurationError(f"{batch} images of {r}x{c} crops need {batch * r * c} crops, got {N}")
    return crops.reshape(batch, r, c, C, h, w).permute(0, 3, 1, 4, 2, 5).reshape(batch, C, r * h, c * w)


def split_into_crops(x: torch.Tensor, crop_size) -> tuple[torch.Tensor, CropLayout]:
    """Tile ``x`` (``(C, H, W)`` or ``(1, C, H, W)``) into ``(N, C, ch, cw)`` crops in row-major order.

    The image is first padded (replicate) to multiples of ``crop_size`` (int or ``(ch, cw)``).
    :func:`stitch_crops` with the returned :class:`CropLayout` inverts this.
    """
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ConfigurationError(f"split_into_crops takes one image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.ndim != 3:
        raise ConfigurationError(f"expected an image (C, H, W), got shape {tuple(x.shape)}")
    ch, cw = pair(crop_size, "crop_size")
    padded, (H, W) = pad_to_multiple(x, (ch, cw), mode="replicate")
    grid = (padded.shape[1] // ch, padded.shape[2] // cw)
    crops = to_crops(padded.unsqueeze(0), (ch, cw))
    return crops.contiguous(), CropLayout(grid=grid, crop_size=(ch, cw), image_size=(H, W))


def stitch_crops(crops: torch.Tensor, layout: CropLayout, scale: int = 1) -> torch.Tensor:
    """Reassemble crops from :func:`split_into_crops` into one ``(C, scale*H, scale*W)`` image.

    With ``scale > 1`` each crop must be ``scale`` times the layout's crop size (e.g. decoded
    at a higher resolution); the result is cropped to ``scale`` times the original size.
    """
    scale = positive_int(scale, "scale")
    rows, cols = layout.grid
    ch, cw = layout.crop_size[0] * scale, layout.crop_size[1] * scale
    if crops.ndim != 4:
        raise ConfigurationError(f"expected crops of shape (N, C, h, w), got {tuple(crops.shape)}")
    if crops.shape[0] != rows * cols:
        raise ConfigurationError(f"layout has {rows}x{cols} = {rows * cols} crops, got {crops.shape[0]}")
    if tuple(crops.shape[-2:]) != (ch, cw):
        raise ConfigurationError(
            f"at scale {scale} crops must be {ch}x{cw}, got {crops.shape[-2]}x{crops.shape[-1]}"
        )
    H, W = layout.image_size
    return from_crops(crops, 1, layout.grid)[0, :, : scale * H, : scale * W]
