"""``collage fractalize``: turn an image into fractal art (a whole-image collage) and render it zoomed."""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigurationError, ImageError, OutputExistsError, TransparencyError
from .common import positive_int, set_threads

#: Isometry sets offered on the command line (numbers as in ``core.partitions.ISOMETRY_NAMES``).
ISOMETRY_SETS = {"all": tuple(range(8)), "rotations": (0, 1, 2, 3), "flips": (0, 4), "identity": (0,)}
#: Longest side of the GIF frames (the PNG output is full size).
GIF_SIZE = 256


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fractalize",
        help="turn an image into fractal art: a collage whose only domain is the whole image",
        description="Fit a collage whose one domain is the whole image (under the chosen isometries), then render "
        "it --zoom times larger: every range cell holds a shrunken copy of the whole picture, at every zoom. "
        "Optionally save the code (.clg, decodable at any scale with `collage decompress --scale S`), a GIF of "
        "the decode from noise and a GIF of a continuous zoom into the fractal.",
    )
    p.add_argument("input", type=Path, help="image to fractalize (PNG, JPEG, ...)")
    p.add_argument("output", type=Path, help="the fractalized image, rendered at --zoom (PNG recommended)")
    p.add_argument("--range", type=positive_int, default=8, help="range cell size in pixels (default: %(default)s)")
    p.add_argument("--zoom", type=positive_int, default=4, help="render scale of OUTPUT, 1-16 (default: %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: 60; 0 = closed form only)")
    p.add_argument("--isometries", choices=sorted(ISOMETRY_SETS), default="all",
                   help="isometries of the whole-image domain (default: %(default)s)")
    p.add_argument("--s-max", type=float, default=0.9, help="contraction bound in (0, 1) (default: %(default)s)")
    p.add_argument("--aux", type=int, default=0, help="learned auxiliary patches (default: %(default)s)")
    p.add_argument("--shared-maps", action="store_true", help="one set of weights for all colour channels")
    p.add_argument("--code", type=Path, default=None, help="also save the fitted code as a .clg file")
    p.add_argument("--gif", type=Path, default=None, help="also save a GIF of the decode from noise")
    p.add_argument("--zoom-video", type=Path, default=None, help="also save a GIF zooming from 1x to --zoom")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(handler=run_fractalize)


def run_fractalize(args) -> int:
    import time

    from tqdm import tqdm

    from ...codecs.base import check_decode_scale
    from ...codecs.fractal_art import encode_art, render
    from ...coding.container import ContainerHeader
    from ...fractal_art import DEFAULT_STEPS, FractalizeOptions, decode_from_noise, fractalize, zoom_frames
    from ...imaging.atomic import atomic_write_bytes
    from ...imaging.io import load_image, save_animation, save_image

    set_threads(args.threads)
    if not 1 <= args.zoom <= 16:
        raise ConfigurationError(f"--zoom must lie in 1..16, got {args.zoom}")
    if args.steps is not None and not 0 <= args.steps <= 10_000:
        raise ConfigurationError(f"--steps must lie in 0..10000, got {args.steps}")
    if not 0 < args.s_max < 1:
        raise ConfigurationError(f"--s-max must lie in (0, 1), got {args.s_max}")
    if not 0 <= args.aux <= 64:
        raise ConfigurationError(f"--aux must lie in 0..64, got {args.aux}")
    if args.range > 64:
        raise ConfigurationError(f"--range must be at most 64, got {args.range}")
    outputs = [p for p in (args.output, args.code, args.gif, args.zoom_video) if p is not None]
    if len(set(outputs)) != len(outputs):
        raise ConfigurationError("the output files must differ")
    for path in outputs:
        if path.exists() and not args.force:
            raise OutputExistsError(f"{path} exists; refusing to overwrite it (use --force)", path)
        if path.is_dir():
            raise ImageError(f"{path} is a directory")
    for path in (args.gif, args.zoom_video):
        if path is not None and path.suffix.lower() != ".gif":
            raise ConfigurationError(f"{path}: animations are written as GIF; use a .gif suffix")
    try:
        image = load_image(args.input, mode="keep", alpha="error")
    except TransparencyError:
        raise ImageError(f"{args.input}: the image has transparency; flatten it first") from None
    C, H, W = image.shape
    check_decode_scale(args.zoom, ContainerHeader("fractal-art", W, H, C, {}))
    steps = DEFAULT_STEPS if args.steps is None else args.steps
    options = FractalizeOptions(range_size=args.range, isometries=ISOMETRY_SETS[args.isometries],
                                s_max=args.s_max, aux=args.aux,
                                channel_maps="shared" if args.shared_maps else "per_channel", steps=steps)
    with tqdm(total=steps, desc="fractalize", unit="step", leave=False) as bar:
        art, report = fractalize(image, options, progress=bar.update)
    t0 = time.perf_counter()
    out = render(art, args.zoom).clamp(0, 1)
    t_render = time.perf_counter() - t0
    save_image(out, args.output, force=args.force)
    print(f"{args.input} ({W}x{H}) -> {args.output} ({W * args.zoom}x{H * args.zoom}): fitted in {report.seconds:.2f} s, "
          f"rendered in {t_render:.2f} s")
    print(f"collage loss {report.collage_loss_closed_form:.5f} (closed form) -> {report.collage_loss:.5f}; "
          f"fixed point PSNR {_psnr(report.mse_closed_form):.2f} -> {_psnr(report.mse):.2f} dB "
          f"after {steps} fine-tuning steps")
    if args.code is not None:
        data = encode_art(art)
        atomic_write_bytes(args.code, data, force=args.force)
        print(f"wrote {args.code} ({len(data):,} bytes; `collage decompress {args.code} big.png --scale 8`)")
    if args.gif is not None:
        frames = decode_from_noise(art, scale=1, frames=24)
        save_animation([_fit(f) for f in frames], args.gif, force=args.force, duration_ms=120)
        print(f"wrote {args.gif} ({len(frames)} frames: the decode from noise)")
    if args.zoom_video is not None:
        with tqdm(total=args.zoom, desc="zoom renders", unit="scale", leave=False) as bar:
            frames = zoom_frames(art, zoom=args.zoom, frames=32, size=GIF_SIZE, progress=bar.update)
        save_animation(frames, args.zoom_video, force=args.force, duration_ms=80)
        print(f"wrote {args.zoom_video} ({len(frames)} frames: 1x to {args.zoom}x)")
    return 0


def _psnr(mse: float) -> float:
    import math

    return 10 * math.log10(1 / max(mse, 1e-12))


def _fit(frame):
    """A frame shrunk (never enlarged) so its longer side is at most :data:`GIF_SIZE`."""
    import torch.nn.functional as F

    h, w = frame.shape[-2:]
    k = min(1.0, GIF_SIZE / max(h, w))
    if k == 1.0:
        return frame
    return F.interpolate(frame.unsqueeze(0), size=(max(1, round(h * k)), max(1, round(w * k))), mode="area")[0]
