"""Shipped models ready for coding: the network, its coder tables and a digest that files record."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...coding.sparse_blocks import BlockModels
from ...coding.table_coding import FrequencyTables
from ...errors import ConfigurationError, FormatError
from ...models.model_files import load_model
from ...models.zoo import model_path


class LoadedModel:
    """A model file ready for coding: the network, its integer tables and their digest."""

    def __init__(self, name: str, path: Path):
        self.name = name
        model_file = load_model(path)
        self.model, self.info = model_file.model, model_file.info
        coef, mean = model_file.coef_counts, model_file.mean_counts
        bound = self.model.config.coef_bound
        levels = self.model.config.mean_levels
        try:
            self.coef_tables = FrequencyTables(coef, np.full(coef.shape[0], -bound))
            self.mean_tables = FrequencyTables(mean, np.full(mean.shape[0], -levels))
            self.block_models = BlockModels(self.coef_tables)  # the coefficients' sparse coding
        except ConfigurationError as exc:
            raise FormatError(f"{path}: invalid entropy tables ({exc})") from None
        digest = hashlib.sha256()
        digest.update(coef.astype("<i4").tobytes())
        digest.update(mean.astype("<i4").tobytes())
        for op in (self.model.luma_op, self.model.chroma_op):
            digest.update(op.aux_patches.detach().numpy().astype("<f4").tobytes())
        self.digest = digest.hexdigest()[:16]


@lru_cache(maxsize=8)
def load_named_model(name: str) -> LoadedModel:
    """The shipped model ``name`` (cached: a model is read once per process)."""
    return LoadedModel(name, model_path(name))
