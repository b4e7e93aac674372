"""Small real-content image folders for the batch tests (crops of the bundled astronaut)."""

from pathlib import Path

import numpy as np
from PIL import Image

from neural_collages.assets import sample_image_path

ASTRONAUT = sample_image_path()


def crops(n: int, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    """``n`` different ``size``-px RGB crops of the astronaut, as ``uint8`` (H, W, 3)."""
    pixels = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y, x = rng.integers(0, pixels.shape[0] - size), rng.integers(0, pixels.shape[1] - size)
        out.append(np.ascontiguousarray(pixels[y : y + size, x : x + size]))
    return out


def make_folder(root: Path, n: int = 4, size: int = 64, corrupt: tuple[str, ...] = ()) -> list[str]:
    """A folder tree of ``n`` PNG/JPEG images (half in a subfolder) plus ``corrupt`` bad files; relative paths."""
    names = []
    for i, arr in enumerate(crops(n, size)):
        rel = f"img{i}.png" if i % 2 == 0 else f"sub/deeper/img{i}.jpg"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path, quality=95)
        names.append(rel)
    for rel in corrupt:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"definitely not the rest of a PNG")
        names.append(rel)
    return sorted(names)
