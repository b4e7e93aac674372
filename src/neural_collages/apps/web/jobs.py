"""The web app's work: checking uploads, fractal art, the codecs against JPEG; results as data URLs.

Plain functions of bytes, tensors and numbers, with no web framework in sight: ``app.py`` parses
a request, calls one of these in a worker thread (one job at a time) and returns the dict as JSON.
Every refusal is a :class:`~neural_collages.errors.CollageError` with one sentence for the user.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ...assets import sample_image_path
from ...codecs import compress, decompress, quality_levels
from ...codecs.fractal_art import encode_art, render
from ...errors import CollageError, ConfigurationError, ImageError, TransparencyError
from ...fractal_art import DEFAULT_STEPS, FractalizeOptions, decode_from_noise, fractalize
from ...imaging.io import load_image, to_uint8
from ...imaging.jpeg import jpeg_at_most
from ...imaging.metrics import psnr
from ..cli.fractalize import ISOMETRY_SETS

#: Largest upload accepted, in bytes.
MAX_UPLOAD_BYTES = 10 * 2**20
#: Largest upload accepted, in pixels (checked on the header, before decoding).
MAX_UPLOAD_PIXELS = 4_000_000
#: Pillow formats accepted, with the suffix of the temporary file handed to ``load_image``.
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp"}
#: Longer side of the images fractalized / compressed (larger ones are shrunk with Pillow first).
ART_MAX_SIDE = 512
CODEC_MAX_SIDE = 1024
#: Largest zoomed output (width × height).
MAX_OUTPUT_PIXELS = 4096 * 4096
RANGE_SIZES = (4, 8, 16)
ZOOMS = tuple(range(1, 9))
MAX_STEPS = 200
CODECS = ("pifs", "neural")
#: The neural codec's model family offered here (``quality_levels("neural", MODEL)``).
MODEL = "photo"
GIF_SIZE, GIF_FRAMES, GIF_MS = 256, 24, 120


@dataclass
class Upload:
    """A decoded upload: a float image ``(C, H, W)`` in [0, 1], its name and notes for the user."""

    image: torch.Tensor
    name: str
    notes: list[str] = field(default_factory=list)


def settings() -> dict:
    """What the page needs to build its forms and state the limits."""
    return {
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "max_upload_pixels": MAX_UPLOAD_PIXELS,
        "formats": sorted(FORMATS),
        "art_max_side": ART_MAX_SIDE,
        "codec_max_side": CODEC_MAX_SIDE,
        "range_sizes": list(RANGE_SIZES),
        "zooms": list(ZOOMS),
        "isometries": list(ISOMETRY_SETS),
        "default_steps": DEFAULT_STEPS,
        "qualities": {codec: list(quality_levels(codec, MODEL if codec == "neural" else None)) for codec in CODECS},
        "ifs_maps": list(IFS_MAPS),
        "ifs_max_points": IFS_MAX_POINTS,
        "vae_counts": list(VAE_COUNTS),
        "vae_scales": list(VAE_SCALES),
        "vae_temperatures": list(VAE_TEMPERATURES),
        "vae_max_pixels": VAE_MAX_PIXELS,
    }


# --------------------------------------------------------------------------- uploads


def read_upload(data: bytes | None, filename: str | None, use_sample: bool, max_side: int) -> Upload:
    """Check and decode an uploaded file (or the bundled sample), shrunk to ``max_side`` if larger."""
    if use_sample:
        data, name = sample_image_path().read_bytes(), "the bundled sample"
    else:
        name = Path(filename).name[:80] if filename else "the upload"
        if not data:
            raise ImageError("no image: choose a file or use the bundled sample")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageError(f"{name} is larger than the {MAX_UPLOAD_BYTES // 2**20} MB limit ({len(data) / 2**20:.2f} MB)")
    suffix = FORMATS[_sniff(data, name)]
    with tempfile.TemporaryDirectory(prefix="collage-web-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            image = load_image(path, mode="keep", alpha="error")
        except TransparencyError:
            raise TransparencyError(f"{name} has transparency (an alpha channel that is not fully opaque); "
                                    "flatten it onto a background and upload it again") from None
        except ImageError as exc:
            raise ImageError(str(exc).replace(str(path), name)) from None
    upload = Upload(image, name)
    H, W = image.shape[-2:]
    if max(H, W) > max_side:
        upload.image = shrink(image, max_side)
        h, w = upload.image.shape[-2:]
        upload.notes.append(f"shrunk from {W}x{H} to {w}x{h} (longer side at most {max_side} px)")
    return upload


def _sniff(data: bytes, name: str) -> str:
    """The Pillow format of ``data`` after checking it is accepted and small enough (header only)."""
    accepted = ", ".join(FORMATS)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = im.format, im.size
    except Image.DecompressionBombError:
        limit = MAX_UPLOAD_PIXELS / 1e6
        raise ImageError(f"{name} has far more pixels than the {limit:g} megapixels allowed") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageError(f"{name} is not an image file in a format this app reads ({accepted})") from None
    if fmt not in FORMATS:
        raise ImageError(f"{name} is a {fmt} image; this app reads {accepted} only")
    if w * h > MAX_UPLOAD_PIXELS:
        raise ImageError(f"{name} is {w}x{h} ({w * h / 1e6:.1f} megapixels); the limit is "
                         f"{MAX_UPLOAD_PIXELS / 1e6:g} megapixels")
    return fmt


def shrink(image: torch.Tensor, max_side: int) -> torch.Tensor:
    """``image`` resized with Pillow (Lanczos) so that its longer side is ``max_side``."""
    C, H, W = image.shape
    k = max_side / max(H, W)
    size = (max(1, round(W * k)), max(1, round(H * k)))
    pil = _to_pil(image).resize(size, Image.Resampling.LANCZOS)
    return torch.from_numpy(_pil_array(pil)).permute(2, 0, 1).float() / 255


# --------------------------------------------------------------------------- jobs


def fractal_job(upload: Upload, range_size: int, zoom: int, isometries: str, steps: int = DEFAULT_STEPS) -> dict:
    """Fractalize ``upload``: the result rendered at ``zoom``, the decode from noise as a GIF, the code."""
    image = upload.image
    C, H, W = image.shape
    if W * zoom * H * zoom > MAX_OUTPUT_PIXELS:
        raise ConfigurationError(f"zoom {zoom} of a {W}x{H} image exceeds {MAX_OUTPUT_PIXELS / 1e6:.1f} megapixels; "
                                 "choose a smaller zoom")
    options = FractalizeOptions(range_size=range_size, isometries=ISOMETRY_SETS[isometries], steps=steps)
    art, report = fractalize(image, options)
    t0 = time.perf_counter()
    out = render(art, zoom).clamp(0, 1)
    t_render = time.perf_counter() - t0
    frames = [_fit(f, GIF_SIZE) for f in decode_from_noise(art, scale=1, frames=GIF_FRAMES)]
    code = encode_art(art)
    return {
        "name": upload.name,
        "notes": upload.notes,
        "width": W,
        "height": H,
        "zoom": zoom,
        "original": png_url(image),
        "result": png_url(out),
        "animation": gif_url(frames, GIF_MS),
        "code": data_url(code, "application/octet-stream"),
        "code_bytes": len(code),
        "fit_seconds": report.seconds,
        "render_seconds": t_render,
        "psnr": _finite(report.psnr),
        "psnr_closed_form": _finite(_psnr_of_mse(report.mse_closed_form)),
        "collage_loss": report.collage_loss,
        "collage_loss_closed_form": report.collage_loss_closed_form,
        "steps": steps,
    }


def codec_job(upload: Upload, codec: str, quality: int, scale: int) -> dict:
    """Compress ``upload`` with ``codec`` at ``quality``: the decode, a ``scale``× decode, JPEG at the same size."""
    image = upload.image
    C, H, W = image.shape
    if W * scale * H * scale > MAX_OUTPUT_PIXELS:
        raise ConfigurationError(f"scale {scale} of a {W}x{H} image exceeds {MAX_OUTPUT_PIXELS / 1e6:.1f} "
                                 "megapixels; choose a smaller scale")
    t0 = time.perf_counter()
    data = compress(image, codec, quality, model=MODEL if codec == "neural" else None)
    t_encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded = decompress(data)
    t_decode = time.perf_counter() - t0
    zoomed = decompress(data, scale=scale) if scale > 1 else decoded
    result = {
        "name": upload.name,
        "notes": upload.notes,
        "codec": codec,
        "quality": quality,
        "width": W,
        "height": H,
        "scale": scale,
        "bytes": len(data),
        "bpp": 8 * len(data) / (H * W),
        "psnr": _finite(float(psnr(image, decoded))),
        "encode_seconds": t_encode,
        "decode_seconds": t_decode,
        "original": png_url(image),
        "decoded": png_url(decoded),
        "zoomed": png_url(zoomed),
        "code": data_url(data, "application/octet-stream"),
        "jpeg": None,
    }
    jpeg = jpeg_at_most(image, len(data))
    if jpeg is not None:
        jpeg_data, jpeg_quality = jpeg
        with Image.open(io.BytesIO(jpeg_data)) as im:
            jpeg_image = torch.from_numpy(_pil_array(im)).permute(2, 0, 1).float() / 255
        result["jpeg"] = {
            "bytes": len(jpeg_data),
            "bpp": 8 * len(jpeg_data) / (H * W),
            "psnr": _finite(float(psnr(image, jpeg_image))),
            "quality": jpeg_quality,
            "image": data_url(jpeg_data, "image/jpeg"),
        }
    return result


# --------------------------------------------------------------------------- encodings


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_url(image: torch.Tensor) -> str:
    buffer = io.BytesIO()
    _to_pil(image).save(buffer, format="PNG")
    return data_url(buffer.getvalue(), "image/png")


def gif_url(frames: list[torch.Tensor], duration_ms: int) -> str:
    images = [_to_pil(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return data_url(buffer.getvalue(), "image/gif")


def _to_pil(image: torch.Tensor) -> Image.Image:
    """A float image ``(C, H, W)`` (C = 1 or 3) as an 8-bit Pillow image, L or RGB."""
    arr = to_uint8(image).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, mode="L" if arr.shape[2] == 1 else "RGB")


def _pil_array(im: Image.Image):
    """An L or RGB Pillow image as a ``uint8`` array ``(H, W, C)``."""
    arr = np.array(im.convert("L" if im.mode in ("1", "L") else "RGB"))
    return arr[:, :, None] if arr.ndim == 2 else arr


def _fit(frame: torch.Tensor, size: int) -> torch.Tensor:
    """``frame`` shrunk (never enlarged) so that its longer side is at most ``size``."""
    h, w = frame.shape[-2:]
    k = min(1.0, size / max(h, w))
    if k == 1.0:
        return frame
    return F.interpolate(frame.unsqueeze(0), size=(max(1, round(h * k)), max(1, round(w * k))), mode="area")[0]


def _psnr_of_mse(mse: float) -> float:
    return 10 * math.log10(1 / max(mse, 1e-12))


def _finite(value: float) -> float | None:
    """JSON has no infinity: an exact result's PSNR is sent as ``null`` (shown as ∞)."""
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- IFS point clouds

#: Point files the IFS tab reads (images are read as their dark pixels, like `collage ifs fit`).
POINT_FILE_SUFFIXES = (".npy", ".xyz", ".txt", ".ply")
#: Points fitted at most (a random subset of larger clouds), so one job takes seconds, not minutes.
IFS_MAX_POINTS = 20_000
IFS_MAPS = tuple(range(2, 9))
IFS_METHODS = ("fit", "encoder")
IFS_IMAGE_SIZE = 384


def ifs_job(data: bytes | None, filename: str | None, use_sample: bool, maps: int, method: str) -> dict:
    """Fit ``maps`` affine maps to an uploaded drawing or point file (or a fern cloud); both as density images."""
    from ...ifs.encoder import find_encoder, load_encoder
    from ...ifs.fit import FitOptions, amortised_fit, check_cloud, fit_ifs
    from ...ifs.gallery import FERN, sample
    from ...ifs.io import ifs_to_json, read_cloud
    from ...ifs.render import bounds, density_image, project

    notes = []
    if use_sample:
        cloud, name = sample(FERN, IFS_MAX_POINTS).double(), "a Barnsley fern cloud"
    else:
        name = Path(filename).name[:80] if filename else "the upload"
        if not data:
            raise ImageError("no file: choose a drawing or a point file, or use the sample")
        if len(data) > MAX_UPLOAD_BYTES:
            raise ImageError(f"{name} is larger than the {MAX_UPLOAD_BYTES // 2**20} MB limit")
        suffix = Path(name).suffix.lower()
        if suffix not in POINT_FILE_SUFFIXES:
            suffix = FORMATS[_sniff(data, name)]  # not a point file: it must be an accepted image
        with tempfile.TemporaryDirectory(prefix="collage-web-") as folder:
            path = Path(folder) / f"upload{suffix}"
            path.write_bytes(data)
            try:
                cloud = read_cloud(path)
            except CollageError as exc:
                raise type(exc)(str(exc).replace(str(path), name)) from None
    check_cloud(cloud, maps)
    if len(cloud) > IFS_MAX_POINTS:
        keep = torch.randperm(len(cloud), generator=torch.Generator().manual_seed(0))[:IFS_MAX_POINTS]
        notes.append(f"fitted on {IFS_MAX_POINTS:,} of its {len(cloud):,} points")
        cloud = cloud[keep]
    dim = cloud.shape[1]
    options = FitOptions(restarts=8, keep=2)
    if method == "encoder":
        encoder, _ = load_encoder(find_encoder(None, dim, maps))  # ConfigurationError names the shipped ones
        result = amortised_fit(cloud, encoder, 200, options)
    else:
        result = fit_ifs(cloud, maps, options)
    fitted = result.sample(200_000, seed=1)
    view = bounds(project(cloud.float()))
    A, t, p = result.maps_in_cloud_coordinates()
    text = ifs_to_json(A, t, p, fit={"cloud": name, "points": len(cloud), "method": method})
    return {
        "name": name,
        "notes": notes,
        "points": len(cloud),
        "dim": dim,
        "maps": maps,
        "method": method,
        "seconds": result.seconds,
        "attractor_chamfer": result.attractor_chamfer * result.normalisation.scale,
        "contraction_bound": result.model.contraction_bound(),
        "cloud": png_url(density_image(cloud.float(), IFS_IMAGE_SIZE, view_bounds=view)),
        "attractor": png_url(density_image(fitted, IFS_IMAGE_SIZE, view_bounds=view)),
        "ifs": data_url(text.encode(), "application/json"),
    }


# --------------------------------------------------------------------------- Collage VAE digits

VAE_MODEL = "mnist-collage"
VAE_COUNTS = (4, 9, 16)
VAE_SCALES = (1, 2, 4, 10, 20, 40)
VAE_TEMPERATURES = ("0.5", "0.7", "0.85", "1.0")
VAE_SEEDS = range(0, 1000)
#: Largest grid one job draws (4 digits at 40x are 5 M pixels; 16 at 40x would be 20 M).
VAE_MAX_PIXELS = 6_000_000


@functools.lru_cache(maxsize=1)
def _vae_model():
    from ...vae.files import find_vae, load_vae

    return load_vae(find_vae(VAE_MODEL))


def vae_job(count: int, scale: int, temperature: str, seed: int) -> dict:
    """``count`` digits sampled by the shipped Collage VAE, as a grid at 1x and at ``scale``."""
    if count * (28 * scale) ** 2 > VAE_MAX_PIXELS:
        raise ConfigurationError(f"{count} digits at {scale}x are {count * (28 * scale) ** 2:,} pixels; the limit is "
                                 f"{VAE_MAX_PIXELS:,} (fewer digits or a smaller scale)")
    from ...vae.model import digit_grid

    model, info = _vae_model()
    t0 = time.perf_counter()
    with torch.no_grad():
        h, _ = model.run_topdown(None, count, torch.Generator().manual_seed(seed), float(temperature))
        small = model.decode_state(h, 1)
        large = model.decode_state(h, scale)
    seconds = time.perf_counter() - t0
    return {"count": count, "scale": scale, "temperature": float(temperature), "seed": seed, "seconds": seconds,
            "side": 28 * scale, "model": VAE_MODEL, "training_steps": info.get("steps"),
            "small": png_url(digit_grid(small)), "samples": png_url(digit_grid(large))}
