"""The JPEG baseline at a given size: what the demo and the web app compare the codecs against."""

from __future__ import annotations

import io

import torch
from PIL import Image

from .io import to_uint8


def jpeg_at_most(image: torch.Tensor, max_bytes: int) -> tuple[bytes, int] | None:
    """The best Pillow JPEG (``optimize=True``) of ``image`` ``(C, H, W)`` no larger than ``max_bytes``, and its quality.

    Bisection over quality 1..95 (file size grows with quality); ``None`` when even quality 1 is larger.
    """
    arr = to_uint8(image).permute(1, 2, 0).numpy()
    pil = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, mode="L" if arr.shape[2] == 1 else "RGB")

    def encode(q: int) -> bytes:
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=q, optimize=True)
        return buffer.getvalue()

    lo, hi, best = 1, 95, None
    while lo <= hi:
        mid = (lo + hi) // 2
        data = encode(mid)
        if len(data) <= max_bytes:
            best, lo = (data, mid), mid + 1
        else:
            hi = mid - 1
    return best
