"""Random augmented training crops from a list of images (reproducible, resumable, rank-aware)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConfigurationError


class CropSampler:
    """Random square training crops from ``uint8`` images ``(3, H, W)``, with dihedral augmentation.

    Each crop comes from an image chosen with probability proportional to its area, at a uniform
    position, then flipped horizontally with probability 1/2 and rotated by a uniform multiple of
    90 degrees. The sampler owns a ``torch.Generator`` seeded from ``(seed, rank)``, so runs are
    reproducible and distributed ranks draw different crops; :meth:`state_dict` saves it for resume.
    Images smaller than ``crop`` on either side are skipped (:class:`ConfigurationError` if none remain).
    """

    def __init__(
        self, images: Sequence[torch.Tensor], crop: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        checks = (("crop", crop, 1), ("seed", seed, 0), ("rank", rank, 0), ("world_size", world_size, 1))
        for name, value, low in checks:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(f"{name} must be an integer >= {low}, got {value!r}")
        if rank >= world_size:
            raise ConfigurationError(f"rank must be < world_size ({world_size}), got {rank}")
        kept = []
        for i, image in enumerate(images):
            ok = isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.ndim == 3
            if not ok or image.shape[0] != 3:
                shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
                raise ConfigurationError(f"image {i} must be a uint8 tensor (3, H, W), got {shape}")
            if image.shape[1] >= crop and image.shape[2] >= crop:
                kept.append(image)
        if not kept:
            raise ConfigurationError(f"no image is at least {crop}x{crop}; use a smaller crop")
        self.images = kept
        self.crop = crop
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self._weights = torch.tensor([float(im.shape[1] * im.shape[2]) for im in kept], dtype=torch.float64)
        self._limits = torch.tensor([[im.shape[1] - crop + 1, im.shape[2] - crop + 1] for im in kept])
        self.generator = torch.Generator()
        # SeedSequence mixes (seed, rank) into well-separated streams; seed + rank would make
        # (seed=1, rank=0) and (seed=0, rank=1) identical.
        state = np.random.SeedSequence([seed, rank]).generate_state(1, dtype=np.uint64)[0]
        self.generator.manual_seed(int(state))

    def __len__(self) -> int:
        """Number of images large enough to sample from."""
        return len(self.images)

    def sample(self, batch: int) -> torch.Tensor:
        """A ``float32`` batch ``(batch, 3, crop, crop)`` with values in ``[0, 1]``."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigurationError(f"batch must be a positive integer, got {batch!r}")
        g = self.generator
        which = torch.multinomial(self._weights, batch, replacement=True, generator=g)
        # float64 so floor(u * n) < n holds even for the largest images.
        corners = (torch.rand(batch, 2, dtype=torch.float64, generator=g) * self._limits[which]).long()
        corners = torch.minimum(corners, self._limits[which] - 1)
        flips = torch.randint(0, 2, (batch,), generator=g)
        turns = torch.randint(0, 4, (batch,), generator=g)
        c = self.crop
        out = torch.empty(batch, 3, c, c, dtype=torch.uint8)
        for b in range(batch):
            y, x = corners[b].tolist()
            patch = self.images[int(which[b])][:, y : y + c, x : x + c]
            if flips[b]:
                patch = patch.flip(-1)
            out[b] = torch.rot90(patch, int(turns[b]), dims=(-2, -1))
        return out.to(torch.float32).div_(255.0)

    def state_dict(self) -> dict[str, Any]:
        """The generator state and the configuration it belongs to (``torch.save``-able, weights_only safe)."""
        return {
            "generator": self.generator.get_state(),
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "crop": self.crop,
            "num_images": len(self.images),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the configuration must match (each rank restores its own)."""
        try:
            generator = state["generator"]
            config = {k: state[k] for k in ("seed", "rank", "world_size", "crop", "num_images")}
        except (TypeError, KeyError) as exc:
            raise ConfigurationError(f"not a CropSampler state: missing {exc}") from None
        mine = {"seed": self.seed, "rank": self.rank, "world_size": self.world_size, "crop": self.crop,
                "num_images": len(self.images)}  # fmt: skip
        if config != mine:
            raise ConfigurationError(f"CropSampler state is for {config}, this sampler is {mine}")
        try:
            self.generator.set_state(generator)
        except (TypeError, RuntimeError) as exc:
            raise ConfigurationError(f"invalid CropSampler generator state: {exc}") from exc


