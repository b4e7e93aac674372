"""The ``fractal-art`` codec: a whole-image collage code stored exactly, rendered at any scale.

A fractal-art code is not a compressed image but a picture in its own right: a collage whose
only domain is the whole image (under chosen isometries), so at scale ``s`` every range cell
holds an ``s``-times larger copy of the whole picture. Codes are made by
:func:`neural_collages.fractal_art.fractalize`; this module stores, validates and renders them.

Payload (version 1), little-endian float16 arrays, nothing else:
``weights`` ``(Cw, R, D)``, ``bias`` ``(C, R)``, then ``aux`` patches ``(N, C, r, r)`` if any
(``R`` range cells, ``D`` candidates, ``Cw`` = ``C`` or 1 with shared maps). The code is
quantised to float16 before it is saved, so saving and loading is bit-exact. A decoder checks
the exact payload length, finiteness, magnitudes and the contraction bound before rendering.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...coding.container import ContainerHeader, pack, unpack
from ...core import step
from ...core.codes import DenseCode
from ...core.decode import require_contraction
from ...core.pooling import average_pool
from ...errors import ConfigurationError, FormatError
from ...imaging.tensors import empty_image
from ..base import check_decode_scale, check_output_dtype, register, to_8bit_levels
from .config import ArtConfig

#: Largest magnitude of a stored bias, auxiliary weight or auxiliary pixel (images live in [0, 1]).
MAX_MAGNITUDE = 64.0


@dataclass
class ArtCode:
    """A fitted fractal-art code: its settings, the image it was fitted to (size, channels), the code."""

    config: ArtConfig
    size: tuple[int, int]  # (H, W) of the image, at most the padded size
    channels: int
    code: DenseCode  # batch of 1
    aux: torch.Tensor | None = None  # (N, C, r, r) auxiliary patches, when config.aux > 0

    def operator(self):
        op = self.config.operator(self.channels)
        if self.config.aux:
            with torch.no_grad():
                op.aux_patches.copy_(self.aux)
        return op

    def quantised(self) -> "ArtCode":
        """This code rounded to float16 (what a file stores), with the contraction bound kept below ``s_max``."""
        n_dom = self.code.weights.shape[-1] - self.config.aux
        w = self.code.weights.detach().to(torch.float16).float()
        dom = w[..., :n_dom]
        total = dom.abs().sum(-1, keepdim=True)
        # float16 rounding may push Σ|w| a hair above s_max: shrink those rows in float16 steps.
        for _ in range(8):
            over = total > self.config.s_max
            if not bool(over.any()):
                break
            dom = torch.where(over, (dom * (self.config.s_max / total) * 0.999).to(torch.float16).float(), dom)
            total = dom.abs().sum(-1, keepdim=True)
        w = torch.cat([dom, w[..., n_dom:]], dim=-1)
        bias = self.code.bias.detach().to(torch.float16).float()
        aux = None if self.aux is None else self.aux.detach().to(torch.float16).float()
        return ArtCode(self.config, self.size, self.channels, DenseCode(w, bias), aux)


def _layout(config: ArtConfig, channels: int) -> dict[str, tuple[int, ...]]:
    op = config.operator(channels)
    shapes = {"weights": (op.weight_channels, op.num_ranges, op.num_candidates), "bias": (channels, op.num_ranges)}
    if config.aux:
        shapes["aux"] = (config.aux, channels, config.range_size, config.range_size)
    return shapes


def encode_art(art: ArtCode) -> bytes:
    """The bytes of a ``.clg`` file holding ``art`` (quantised to float16 first)."""
    art = art.quantised()
    H, W = art.size
    parts = {"weights": art.code.weights[0], "bias": art.code.bias[0]}
    if art.config.aux:
        parts["aux"] = art.aux
    shapes = _layout(art.config, art.channels)
    payload = b""
    for name, shape in shapes.items():
        if tuple(parts[name].shape) != shape:
            raise ConfigurationError(f"fractal-art {name} must have shape {shape}, got {tuple(parts[name].shape)}")
        payload += parts[name].numpy().astype("<f2").tobytes()
    return pack(ContainerHeader("fractal-art", W, H, art.channels, art.config.to_params()), payload)


def decode_art(header: ContainerHeader, payload: bytes, config: ArtConfig) -> ArtCode:
    """The code stored in a validated header and payload (:class:`FormatError` on anything invalid)."""
    PH, PW = config.padded
    if not (PH - config.range_size < header.height <= PH and PW - config.range_size < header.width <= PW):
        raise FormatError(f"image size {header.width}x{header.height} does not match the padded size {PW}x{PH}")
    shapes = _layout(config, header.channels)
    expected = sum(2 * int(np.prod(s)) for s in shapes.values())
    if len(payload) != expected:
        raise FormatError(f"fractal-art payload has {len(payload)} bytes, its params imply {expected}")
    arrays, offset = {}, 0
    for name, shape in shapes.items():
        n = 2 * int(np.prod(shape))
        values = np.frombuffer(payload, dtype="<f2", count=n // 2, offset=offset).astype(np.float32)
        offset += n
        if not np.isfinite(values).all() or (name != "weights" and np.abs(values).max(initial=0) > MAX_MAGNITUDE):
            raise FormatError(f"fractal-art {name} hold non-finite or out-of-range values")
        arrays[name] = torch.from_numpy(values.reshape(shape).copy())
    n_dom = shapes["weights"][-1] - config.aux
    weights = arrays["weights"]
    if float(weights[..., :n_dom].abs().sum(-1).max()) > config.s_max * (1 + 1e-3):
        raise FormatError(f"fractal-art code is not contractive: its bound exceeds s_max = {config.s_max}")
    if config.aux and float(weights[..., n_dom:].abs().max()) > MAX_MAGNITUDE:
        raise FormatError("fractal-art auxiliary weights out of range")
    code = DenseCode(weights.unsqueeze(0), arrays["bias"].unsqueeze(0))
    return ArtCode(config, (header.height, header.width), header.channels, code, arrays.get("aux"))


def render(art: ArtCode, scale: int = 1, init: torch.Tensor | None = None, steps: int | None = None,
           return_trajectory: bool = False):
    """The code's fixed point at integer ``scale``: ``(C, s·H, s·W)`` floats (not rounded), and the frames.

    Runs ``steps`` (default the code's ``decode_steps``) iterations from ``init`` (zeros, or e.g.
    noise for an animation) — a fixed count, so every render of a code takes the same work.
    """
    op = art.operator()
    with torch.no_grad():
        z, stats = op.decode(art.code, scale, init=init, tol=0, max_steps=steps or art.config.decode_steps,
                             return_trajectory=return_trajectory)
    H, W = art.size
    crop = [f[0, :, : scale * H, : scale * W] for f in (stats.trajectory if return_trajectory else [z])]
    return (crop[-1], crop) if return_trajectory else crop[-1]


def render_levels(art: ArtCode, scale: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``to_8bit_levels(render(art, scale), 255, dtype=dtype)``, bit for bit, holding no image but the result when large.

    A step reads its input only through the pooled buffer, here the whole image pooled to one
    range cell (3·(s·r)² values). Outputs that :func:`dense_step` would band are therefore
    iterated on that buffer, pooling each band of range rows as it is made (the same bands, the
    same arithmetic), and only the last step keeps pixels, written as 8-bit levels. Iterating on
    images holds three at once (the zero start, the last and the next iterate: 0.8 GB each for
    kodim01 at 13×) and the freed band temporaries glibc keeps around them, a 3.25 GiB peak; this
    way the decode peaks at 1.13 GiB, the output included (benchmarks/decode_limits.py).
    """
    op = art.operator()
    H, W = art.size
    if art.channels * scale * scale * op.size[0] * op.size[1] <= step.DENSE_BAND_VALUES:
        return to_8bit_levels(render(art, scale), 255, dtype=dtype)
    op.prepare(art.code, scale)  # the checks of op.decode
    require_contraction(op, art.code)
    tables = op.tables(scale)
    (kernel,), ((bh, bw),) = tables.pool_kernels, tables.buffer_shapes  # one domain: stride = kernel
    buffer = art.code.bias.new_zeros(1, art.channels, bh * bw)  # the zero start image, pooled
    with torch.no_grad():
        for _ in range(art.config.decode_steps - 1):
            bands = (band for _, band in step.dense_bands(op, buffer, art.code, scale))
            pooled = buffer.new_empty(1, art.channels, bh, bw)
            for i, window in enumerate(_windows(bands, kernel[0])):
                pooled[:, :, i : i + 1] = average_pool(window, kernel, kernel)
            buffer = pooled.flatten(2)
        out = empty_image(art.channels, scale * H, scale * W, dtype)
        for top, band in step.dense_bands(op, buffer, art.code, scale):
            if top < scale * H:
                out[:, top : top + band.shape[2]] = to_8bit_levels(band[0, :, : scale * H - top, : scale * W], 255,
                                                                   dtype=dtype)
    return out


def _windows(bands, rows: int):
    """The rows of a stream of bands ``(B, C, h, W)``, top to bottom, as windows of exactly ``rows`` rows.

    A window that straddles two bands is joined from their pieces. Pooling window by window
    keeps the temporaries of one size, which glibc reuses; pooling whole bands with the ragged
    rest of the last one joined on left 0.15 GB more freed heap in the RSS at 13× (decode peak
    1.25 GiB instead of 1.13).
    """
    pieces, have = [], 0
    for band in bands:
        top = 0
        while top < band.shape[2]:
            pieces.append(band[:, :, top : top + rows - have])
            have, top = have + pieces[-1].shape[2], top + pieces[-1].shape[2]
            if have == rows:
                yield pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)
                pieces, have = [], 0


def decode_parts(header: ContainerHeader, payload: bytes, config: ArtConfig, scale: int = 1,
                 return_trajectory: bool = False, dtype: torch.dtype = torch.float32):
    """Render a fractal-art file at ``scale`` (8-bit levels in ``[0, 1]``, or 0–255 as ``dtype`` uint8;
    frames with ``return_trajectory``)."""
    scale = check_decode_scale(scale, header)
    check_output_dtype(dtype)
    art = decode_art(header, payload, config)
    if return_trajectory:
        image, frames = render(art, scale, return_trajectory=True)
        return to_8bit_levels(image, 255, dtype=dtype), [to_8bit_levels(f, 255, dtype=dtype) for f in frames]
    return render_levels(art, scale, dtype)


def read_art(data: bytes) -> ArtCode:
    """The code in the bytes of a fractal-art ``.clg`` file."""
    header, payload = unpack(data)
    if header.codec != "fractal-art":
        raise FormatError(f"not a fractal-art file (codec {header.codec!r})")
    return decode_art(header, payload, ArtConfig.from_params(header.params))


class FractalArtCodec:
    """Fractal-art codes behind the :class:`~neural_collages.codecs.base.Codec` protocol (decode only)."""

    name = "fractal-art"

    def qualities(self, model: str | None = None) -> tuple[int, ...]:
        return ()

    def encode(self, image: torch.Tensor, quality: int | None = None, *, model: str | None = None,
               progress: bool = False) -> bytes:
        raise ConfigurationError("fractal-art codes are fitted, not compressed: use `collage fractalize` "
                                 "or neural_collages.fractal_art.fractalize")

    def config_from_params(self, params: dict) -> ArtConfig:
        return ArtConfig.from_params(params)

    def decode(self, header: ContainerHeader, payload: bytes, config: ArtConfig, scale: int = 1,
               return_trajectory: bool = False, dtype: torch.dtype = torch.float32):
        return decode_parts(header, payload, config, scale, return_trajectory, dtype)


CODEC = register(FractalArtCodec())
