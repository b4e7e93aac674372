"""Classic IFS (Barnsley fern, Sierpinski triangle and tetrahedron), a non-fractal ring, and the gallery.

:func:`gallery` samples each true attractor, fits an IFS with the right number of maps to the
cloud (:func:`~neural_collages.ifs.fit.fit_ifs`), and compares Chamfer(fitted attractor, cloud)
with Chamfer(a fresh sample of the true attractor, cloud): the latter is the sampling noise floor,
what a perfect fit would score with the same number of points.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .fit import FitOptions, chamfer, fit_ifs
from .render import chaos_game


@dataclass(frozen=True)
class ClassicIFS:
    name: str
    A: tuple
    t: tuple
    p: tuple | None = None

    def maps(self):
        return (torch.tensor(self.A, dtype=torch.float64), torch.tensor(self.t, dtype=torch.float64),
                None if self.p is None else torch.tensor(self.p, dtype=torch.float64))

    @property
    def dim(self) -> int:
        return len(self.t[0])

    @property
    def num_maps(self) -> int:
        return len(self.A)


FERN = ClassicIFS(
    "fern",
    (((0.0, 0.0), (0.0, 0.16)), ((0.85, 0.04), (-0.04, 0.85)), ((0.20, -0.26), (0.23, 0.22)),
     ((-0.15, 0.28), (0.26, 0.24))),
    ((0.0, 0.0), (0.0, 1.6), (0.0, 1.6), (0.0, 0.44)),
    (0.01, 0.85, 0.07, 0.07),
)
SIERPINSKI = ClassicIFS(
    "sierpinski",
    tuple(((0.5, 0.0), (0.0, 0.5)) for _ in range(3)),
    ((0.0, 0.0), (0.5, 0.0), (0.25, 0.5 * 3 ** 0.5 / 2)),
    (1 / 3, 1 / 3, 1 / 3),
)
_TET = ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.5, 3 ** 0.5 / 2, 0.0), (0.5, 3 ** 0.5 / 6, (2 / 3) ** 0.5))
TETRAHEDRON = ClassicIFS(
    "tetrahedron",
    tuple(((0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5)) for _ in range(4)),
    tuple(tuple(0.5 * c for c in v) for v in _TET),
    (0.25, 0.25, 0.25, 0.25),
)
CLASSICS = {c.name: c for c in (FERN, SIERPINSKI, TETRAHEDRON)}


@dataclass(frozen=True)
class Shape:
    """A non-fractal shape to approximate by an IFS: a sampler of its points and a number of maps."""

    name: str
    dim: int
    num_maps: int
    sampler: Callable[[int, int], torch.Tensor]  # (points, seed) -> (points, dim)


def _ring(points: int, seed: int) -> torch.Tensor:
    """A unit circle (a smooth closed curve, no self-similarity but its own arcs)."""
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(points, generator=g, dtype=torch.float64) * 2 * math.pi
    return torch.stack([torch.cos(angle), torch.sin(angle)], 1).float()


RING = Shape("ring", 2, 6, _ring)
SHAPES = {**CLASSICS, RING.name: RING}


def sample(example, points: int = 100_000, seed: int = 0) -> torch.Tensor:
    """``points`` points of a classic IFS's attractor, or of a :class:`Shape`."""
    if isinstance(example, Shape):
        return example.sampler(points, seed)
    A, t, p = example.maps()
    return chaos_game(A, t, p, points, seed=seed)


@dataclass
class GalleryEntry:
    name: str
    dim: int
    maps: int
    points: int
    chamfer_fitted: float  # attractor of the fitted IFS vs the cloud (cloud units)
    chamfer_noise_floor: float  # fresh sample of the true IFS vs the cloud
    ratio: float
    fit_seconds: float
    contraction_bound: float
    cloud: torch.Tensor = field(repr=False, default=None)
    fitted_points: torch.Tensor = field(repr=False, default=None)
    result: object = field(repr=False, default=None)  # the FitResult

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("cloud", "fitted_points", "result")}


def gallery(names=("fern", "sierpinski", "tetrahedron", "ring"), points: int = 100_000,
            options: FitOptions | None = None, seed: int = 0,
            progress: Callable[[str], object] | None = None) -> list[GalleryEntry]:
    """Fit every named example from a ``points``-point sample of it; see the module docstring."""
    entries = []
    for name in names:
        classic = SHAPES[name]
        if progress is not None:
            progress(name)
        cloud = sample(classic, points, seed=seed)
        fresh = sample(classic, points, seed=seed + 1)
        floor = chamfer(fresh, cloud)
        start = time.perf_counter()
        result = fit_ifs(cloud, classic.num_maps, options or FitOptions(seed=seed))
        seconds = time.perf_counter() - start
        fitted = result.sample(points, seed=seed + 2)
        value = chamfer(fitted, cloud)
        entries.append(GalleryEntry(name, classic.dim, classic.num_maps, points, value, floor, value / floor, seconds,
                                    result.model.contraction_bound(), cloud, fitted, result))
    return entries


def save_gallery(entries: list[GalleryEntry], folder: Path, force: bool = False, size: int = 384) -> None:
    """``gallery.png`` (cloud | fitted attractor per row, log density), ``gallery.json`` and ``<name>.json``."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..imaging.atomic import atomic_write_bytes
    from .io import write_ifs
    from .render import bounds, density_image, project

    folder = Path(folder)
    fig, axes = plt.subplots(len(entries), 2, figsize=(6, 3 * len(entries)), squeeze=False)
    for row, e in zip(axes, entries):
        view = bounds(project(e.cloud))
        for ax, pts, title in ((row[0], e.cloud, f"{e.name}: cloud ({e.points:,} points)"),
                               (row[1], e.fitted_points, f"fitted IFS, {e.maps} maps: x{e.ratio:.2f} of floor")):
            ax.imshow(density_image(pts, size, view_bounds=view).permute(1, 2, 0).numpy())
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(folder / "gallery.png", buffer.getvalue(), force=force)
    atomic_write_bytes(folder / "gallery.json", (json.dumps([e.summary() for e in entries], indent=2) + "\n").encode(),
                       force=force)
    for e in entries:
        A, t, p = e.result.maps_in_cloud_coordinates()
        write_ifs(folder / f"{e.name}.json", A, t, p, fit=e.summary(), force=force)
