"""The neural codec's payload: integer codes ↔ symbol sequences in coding order, with their tables.

Payload: the varint length of the coefficient stream, the coefficient stream, the mean stream
(:func:`~neural_collages.coding.table_coding.encode_in_order`). Coefficients are coded range by
range over the image-wide range grids in raster order (luma, then Cb, then Cr), all candidates
of a range together; with a context model each range's tables follow from the nonzero counts of
the row above, so the decoder decodes a row at a time. Version 2 codes each row of ranges by
its nonzero positions (:mod:`~neural_collages.coding.sparse_blocks`: the same distribution, a
fifth of the decoding time); version 1 coded every coefficient on its own
(``table_coding.encode_in_order``). Mean residuals
(MED DPCM): the luma grid in raster order, then Cb, then Cr; a mean-context model picks each
row's tables from the activity of the decoded row above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...coding.contexts import NUM_MEAN_CONTEXTS, context_grid, mean_context_grid
from ...coding.predictors import med_reconstruct_row, med_residuals
from ...coding.varints import put_varint, read_varint
from ...errors import FormatError
from ...imaging.tensors import from_crops, to_crops
from ...models.neural_collage import RANGE, NeuralCollageCodec


@dataclass
class IntegerCode:
    """An image's integer code: per-crop coefficients, the mean index grids, and the crop grid."""

    coefs: torch.Tensor  # (crops, symbols per crop) int64
    mean_y: np.ndarray  # (rows·crop/8, cols·crop/8) int64
    mean_c: np.ndarray  # (2, h, w) int64
    grid: tuple[int, int]  # (rows, cols) of crops


def mean_tables(model: NeuralCollageCodec, grid: torch.Tensor, plane: int) -> torch.Tensor:
    """Table of every mean residual of one plane's index grid ``(h, w)``."""
    if not model.config.mean_context:
        return torch.full(grid.shape, plane, dtype=torch.long)
    return plane * NUM_MEAN_CONTEXTS + mean_context_grid(grid)


def mean_sequence(model: NeuralCollageCodec, mean_y: np.ndarray, mean_c: np.ndarray):
    """DPCM residuals and their tables in coding order: luma grid (raster), Cb, Cr."""
    first = model.config.mean_levels // 2
    values, tables = [], []
    for plane, grid in enumerate([mean_y, mean_c[0], mean_c[1]]):
        values.append(med_residuals(grid, first).ravel())
        tables.append(mean_tables(model, torch.from_numpy(grid), plane).reshape(-1).numpy())
    return np.concatenate(values), np.concatenate(tables)


def decode_means(model: NeuralCollageCodec, decoder, shape_y: tuple[int, int], shape_c: tuple[int, int]):
    """Decode the three mean grids row by row (a row's tables depend only on the row above)."""
    first = model.config.mean_levels // 2
    grids = []
    for plane, (h, w) in enumerate([shape_y, shape_c, shape_c]):
        rows: list[list[int]] = []
        for i in range(h):
            if model.config.mean_context and i:
                pair = torch.tensor([rows[-1], rows[-1]])
                tables = (plane * NUM_MEAN_CONTEXTS + mean_context_grid(pair)[1]).numpy()
            else:
                tables = np.full(w, plane * (NUM_MEAN_CONTEXTS if model.config.mean_context else 1))
            residuals = decoder.decode(tables).tolist()
            rows.append(med_reconstruct_row(residuals, rows[-1] if rows else None, first))
        grids.append(np.asarray(rows, dtype=np.int64).reshape(h, w))
    return grids[0], np.stack(grids[1:])


def crop_grid(width: int, height: int, crop: int) -> tuple[int, int]:
    """``(rows, cols)`` of ``crop``-px crops covering a ``width × height`` image (padded)."""
    return -(-height // crop), -(-width // crop)


def coefficient_grids(model: NeuralCollageCodec, coefs: torch.Tensor, grid: tuple[int, int]):
    """Per-crop integer codes ``(n, Ry·Dy + 2·Rc·Dc)`` → image-wide grids ``(Dy, R, C)`` and ``(2, Dc, Rc', Cc')``."""
    n = grid[0] * grid[1]
    r = model.config.crop // RANGE
    Ry, Dy = model.luma_op.num_ranges, model.luma_op.num_candidates
    Dc = model.chroma_op.num_candidates
    q_y = coefs[:, : Ry * Dy].reshape(n, r, r, Dy).permute(0, 3, 1, 2)
    rc = r // model.chroma_factor
    q_c = coefs[:, Ry * Dy:].reshape(n, 2, rc, rc, Dc).permute(0, 1, 4, 2, 3).reshape(n, 2 * Dc, rc, rc)
    luma = from_crops(q_y, 1, grid)[0]
    chroma = from_crops(q_c, 1, grid)[0].reshape(2, Dc, grid[0] * rc, grid[1] * rc)
    return luma, chroma


def grids_to_coefficients(model: NeuralCollageCodec, luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_coefficient_grids`."""
    r = model.config.crop // RANGE
    Dc = chroma.shape[1]
    q_y = to_crops(luma.unsqueeze(0), r)  # (n, Dy, r, r)
    n = q_y.shape[0]
    rc = r // model.chroma_factor
    q_c = to_crops(chroma.reshape(1, 2 * Dc, *chroma.shape[-2:]), rc).reshape(n, 2, Dc, rc, rc)
    return torch.cat([q_y.permute(0, 2, 3, 1).reshape(n, -1), q_c.permute(0, 1, 3, 4, 2).reshape(n, -1)], 1)


def plane_tables(model: NeuralCollageCodec, plane: torch.Tensor, first_type: int) -> torch.Tensor:
    """Table of every coefficient of one plane's grid ``(D, R, C)``, laid out ``(R, C, D)``."""
    D = plane.shape[0]
    types = first_type + torch.arange(D)
    if not model.config.context:
        return types.expand(plane.shape[1], plane.shape[2], D)
    ctx = context_grid((plane != 0).sum(0))
    return ctx.unsqueeze(-1) * model.num_types + types


def coefficient_sequence(model: NeuralCollageCodec, luma: torch.Tensor, chroma: torch.Tensor):
    """Values and tables in coding order: luma ranges in raster order (all candidates of a range
    together), then the Cb ranges, then the Cr ranges."""
    Dy, Dc = luma.shape[0], chroma.shape[1]
    parts = [(luma, 0), (chroma[0], Dy), (chroma[1], Dy + Dc)]
    values = [p.permute(1, 2, 0).reshape(-1) for p, _ in parts]
    tables = [plane_tables(model, p, t).reshape(-1) for p, t in parts]
    return torch.cat(values).long().numpy(), torch.cat(tables).long().numpy()


def coefficient_rows(model: NeuralCollageCodec, luma: torch.Tensor, chroma: torch.Tensor):
    """The coefficient grids as rows of blocks for :func:`~neural_collages.coding.sparse_blocks.encode_rows`:
    per range row (luma, then Cb, then Cr), the ranges' values ``(C, D)`` and their first tables ``(C,)``."""
    Dy, Dc = luma.shape[0], chroma.shape[1]
    for plane, first in ((luma, 0), (chroma[0], Dy), (chroma[1], Dy + Dc)):
        bases = plane_tables(model, plane, first)[..., 0].numpy()
        values = plane.permute(1, 2, 0).long().numpy()
        yield from zip(values, bases)


def decode_coefficients(model: NeuralCollageCodec, decode_row, shape_y: tuple[int, int], shape_c: tuple[int, int]):
    """Decode the coefficient grids row by row (a row's contexts depend only on the row above);
    ``decode_row(bases (C,), D)`` returns the next row's values ``(C, D)``, range ``i`` under the
    tables ``bases[i] .. bases[i] + D - 1``."""
    Dy, Dc = model.luma_op.num_candidates, model.chroma_op.num_candidates
    planes = []
    for D, first, (R, C) in ((Dy, 0, shape_y), (Dc, Dy, shape_c), (Dc, Dy + Dc, shape_c)):
        plane = np.zeros((R, C, D), dtype=np.int64)
        above = torch.zeros(C, dtype=torch.long)
        for i in range(R):
            if model.config.context:
                ctx = context_grid(torch.stack([above, torch.zeros_like(above)]))[1].numpy()
                bases = ctx * model.num_types + first
            else:
                bases = np.full(C, first)
            row = decode_row(bases, D)
            plane[i] = row
            above = torch.from_numpy((row != 0).sum(1))
        planes.append(torch.from_numpy(plane).permute(2, 0, 1))
    return planes[0], torch.stack(planes[1:])


def join_payload(coef_bytes: bytes, mean_bytes: bytes) -> bytes:
    """The payload: varint length of the coefficient stream, the coefficient stream, the mean stream."""
    head = bytearray()
    put_varint(head, len(coef_bytes))
    return bytes(head) + coef_bytes + mean_bytes


def split_payload(payload: bytes) -> tuple[bytes, bytes]:
    """Inverse of :func:`join_payload` (:class:`FormatError` on a length beyond the data)."""
    length, used = read_varint(payload, 0, "coefficient stream length")
    if used + length > len(payload):
        raise FormatError("neural payload truncated")
    return payload[used:used + length], payload[used + length:]
