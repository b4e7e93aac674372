"""``collage demo``: both codecs on one image, decoded at 1x and zoomed, against JPEG at equal size."""

from __future__ import annotations

import time
from pathlib import Path

from ...errors import ConfigurationError, ImageError, OutputExistsError
from .common import positive_int, set_threads


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="compress an image with the fractal and the Neural Collage codecs, decode at 1x and zoomed, compare with JPEG",
        description=(
            "Compress an image (the bundled sample by default) with the fractal PIFS codec (exact exhaustive "
            "search, rate-distortion quadtree, entropy coding) and with the Neural Collage codec (shipped photo "
            "model, the quality closest in size), decode the files at 1x and at --scale (fractal zoom), and "
            "compare with Pillow JPEG at the fractal file's size. Writes the files to --out."
        ),
    )
    p.add_argument("--image", type=Path, default=None, help="input image (PNG/JPEG); default: bundled sample")
    p.add_argument("--out", type=Path, default=Path("collage-demo"), help="output folder (default: %(default)s)")
    p.add_argument("--quality", type=positive_int, default=None, help="codec quality (pifs 1-10, default: 4)")
    p.add_argument("--scale", type=positive_int, default=4, help="zoom scale of the second decode (default: 4)")
    p.add_argument("--animate", action="store_true", help="also write decode.gif: the decoding iterations")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(handler=run_demo)


def run_demo(args) -> int:
    import io

    import numpy as np
    import torch
    from PIL import Image

    from ...assets import sample_image_path
    from ...codecs import compress, decompress, quality_levels
    from ...imaging.atomic import atomic_write_bytes
    from ...imaging.io import load_image, save_animation, save_image, to_uint8
    from ...imaging.jpeg import jpeg_at_most
    from ...imaging.metrics import psnr

    set_threads(args.threads)
    levels = quality_levels("pifs")
    if args.quality is not None and args.quality not in levels:
        raise ConfigurationError(f"--quality must be one of {levels[0]}..{levels[-1]}")
    path = args.image or sample_image_path()
    image = load_image(path, mode="rgb")
    H, W = image.shape[-2:]
    if H * W > 4096 * 4096:
        raise ImageError(f"{path}: {W}x{H} is larger than the demo handles (16 megapixels); crop it first")
    if args.scale * args.scale * H * W > 2**26:
        raise ConfigurationError(f"--scale {args.scale} would decode a {args.scale * W}x{args.scale * H} image; too big")
    s = args.scale
    outputs = {
        "file": args.out / "image.clg",
        "original": args.out / "original.png",
        "decoded": args.out / "decoded_1x.png",
        "zoomed": args.out / f"decoded_{s}x.png",
        "nearest": args.out / f"nearest_{s}x.png",
        "jpeg": args.out / "jpeg_same_size.jpg",
        "neural_file": args.out / "image_neural.clg",
        "neural_decoded": args.out / "decoded_neural_1x.png",
        "neural_zoomed": args.out / f"decoded_neural_{s}x.png",
    }
    if args.animate:
        outputs["animation"] = args.out / "decode.gif"
    if not args.force:
        existing = [str(p) for p in outputs.values() if p.exists()]
        if existing:
            raise OutputExistsError(f"refusing to overwrite {', '.join(existing)} (use --force)", existing[0])
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    data = compress(image, "pifs", args.quality, progress=True)
    t_encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.animate:
        decoded, frames = decompress(data, return_trajectory=True)
    else:
        decoded = decompress(data)
    t_decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    zoomed = decompress(data, scale=s)
    t_zoom = time.perf_counter() - t0
    nearest = image.repeat_interleave(s, -2).repeat_interleave(s, -1)

    atomic_write_bytes(outputs["file"], data, force=args.force)
    save_image(image, outputs["original"], force=args.force)
    save_image(decoded, outputs["decoded"], force=args.force)
    save_image(zoomed, outputs["zoomed"], force=args.force)
    save_image(nearest, outputs["nearest"], force=args.force)
    if args.animate:
        save_animation([to_uint8(f) for f in frames], outputs["animation"], force=args.force)
    bpp = 8 * len(data) / (H * W)
    ours = float(psnr(image, decoded))
    print(f"image    {path} ({W}x{H})")
    print(f"fractal  {len(data):7d} bytes  {bpp:.3f} bpp  PSNR {ours:.2f} dB  "
          f"(encode {t_encode:.2f} s, decode {t_decode:.3f} s, {s}x zoom {t_zoom:.2f} s)")
    # The Neural Collage codec with the shipped photo model at the quality closest in size.
    t0 = time.perf_counter()
    candidates = [(q, compress(image, "neural", q)) for q in quality_levels("neural", "photo")]
    t_neural = (time.perf_counter() - t0) / len(candidates)
    q_neural, neural_data = min(candidates, key=lambda c: abs(len(c[1]) - len(data)))
    neural_decoded = decompress(neural_data)
    neural_zoomed = decompress(neural_data, scale=s)
    atomic_write_bytes(outputs["neural_file"], neural_data, force=args.force)
    save_image(neural_decoded, outputs["neural_decoded"], force=args.force)
    save_image(neural_zoomed, outputs["neural_zoomed"], force=args.force)
    print(f"neural   {len(neural_data):7d} bytes  {8 * len(neural_data) / (H * W):.3f} bpp  "
          f"PSNR {float(psnr(image, neural_decoded)):.2f} dB  (quality {q_neural}, encode {t_neural:.2f} s)")
    jpeg = jpeg_at_most(image, len(data))
    if jpeg is None:
        del outputs["jpeg"]
        print("jpeg     cannot get this small at any quality")
    else:
        jpeg_bytes, q = jpeg
        with Image.open(io.BytesIO(jpeg_bytes)) as im:
            jpeg_image = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255
        atomic_write_bytes(outputs["jpeg"], jpeg_bytes, force=args.force)
        print(f"jpeg     {len(jpeg_bytes):7d} bytes  {8 * len(jpeg_bytes) / (H * W):.3f} bpp  "
              f"PSNR {float(psnr(image, jpeg_image)):.2f} dB  (Pillow quality {q}, optimize=True)")
    for p in outputs.values():
        print(f"wrote {p}")
    return 0
