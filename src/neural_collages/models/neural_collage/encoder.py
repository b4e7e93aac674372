"""The crop encoder: a CNN that outputs every range's collage weights in one forward pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import RANGE


class ResBlock(nn.Module):
    """Pre-activation residual block of two 3×3 convolutions."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


class CropEncoder(nn.Module):
    """Crop ``(N, 3, c, c)`` YCbCr → luma weights ``(N, 1, R, Dy)`` and chroma weights ``(N, 2, Rc, Dc)``."""

    def __init__(self, width: int, blocks: int, luma_candidates: int, chroma_candidates: int, hint_channels: int = 0,
                 chroma_factor: int = 2):
        super().__init__()
        self.embed = nn.Conv2d(3, width, RANGE, stride=RANGE)  # one feature vector per luma range
        self.blocks = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.hint_channels = hint_channels
        self.luma_head = nn.Conv2d(width + hint_channels, luma_candidates, 1)
        # A chroma range (8×8 at half resolution) covers 2×2 luma ranges: space-to-depth.
        self.chroma_factor = chroma_factor
        self.chroma_head = nn.Conv2d(chroma_factor**2 * width + 2 * hint_channels, 2 * chroma_candidates, 1)
        self.chroma_candidates = chroma_candidates
        for head in (self.luma_head, self.chroma_head):
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)

    def forward(self, crops: torch.Tensor, luma_hint=None, chroma_hint=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``luma_hint`` ``(N, k, r, r)`` / ``chroma_hint`` ``(N, 2k, r/2, r/2)``: per-range search features."""
        h = self.blocks(self.embed(crops - 0.5))
        g = F.gelu(h)
        luma = self.luma_head(g if luma_hint is None else torch.cat([g, luma_hint], 1))  # (N, Dy, r, r)
        N, Dy = luma.shape[:2]
        luma = luma.flatten(2).transpose(1, 2).reshape(N, 1, -1, Dy)
        gc = F.pixel_unshuffle(g, self.chroma_factor) if self.chroma_factor > 1 else g
        chroma = self.chroma_head(gc if chroma_hint is None else torch.cat([gc, chroma_hint], 1))  # (N, 2·Dc, r/2, r/2)
        chroma = chroma.reshape(N, 2, self.chroma_candidates, -1).transpose(2, 3)
        return luma, chroma
