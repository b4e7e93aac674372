"""The paper's aerial compression setting, on a held-out NEON orthophoto (deepforest, CC0).

The Neural Collages paper codes aerial images crop by crop with a model trained on small crops
and reports bits per *sub-pixel* (bits / (H·W·3)). This script codes, from the held-out image
(``neural_collages.training.corpus.aerial_sources("test")``, 1249×1035, never seen in training):

* every non-overlapping 120×120 tile (the paper's small setting), and
* the largest 1200-wide region (1200×1000: the image is 1035 px tall, so 1200×1200 does not fit),

with the aerial and photo Neural Collage models, the fractal PIFS codec and Pillow JPEG
(``optimize=True``) at several qualities, and reports bpp in both conventions next to PSNR and
encode/decode seconds, plus the time to decode a 120×120 file at 10× (1200×1200).

    python benchmarks/aerial.py [--tiles N] [--threads T]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from neural_collages.codecs import decompress, neural, pifs  # noqa: E402
from neural_collages.training.corpus import aerial_sources  # noqa: E402
from neural_collages.imaging.io import load_image  # noqa: E402
from neural_collages.imaging.metrics import psnr  # noqa: E402


def jpeg(image: torch.Tensor, quality: int) -> tuple[bytes, torch.Tensor]:
    arr = (image * 255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality, optimize=True)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        out = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255
    return data, out


def codecs():
    # Each family exactly, then the default: the aerial flag with the encoder's model choice.
    for family in ("aerial", "photo"):
        for q in neural.available_qualities(family):
            yield (f"neural {family} q{q} exact",
                   lambda x, q=q, f=family: neural.encode(x, f, q, choose_model=False), decompress)
    for q in neural.available_qualities("aerial"):
        yield f"neural aerial q{q} chosen", lambda x, q=q: neural.encode(x, "aerial", q), decompress
    for q in (1, 3, 5, 7):
        yield f"pifs q{q}", lambda x, q=q: pifs.encode(x, pifs.PifsConfig(quality=q)), decompress
    for q in (10, 30, 50, 75):
        yield f"jpeg q{q}", ("jpeg", q), None


def measure(images: list[torch.Tensor]) -> list[dict]:
    rows = []
    for name, enc, dec in codecs():
        bits = px = 0
        psnrs, enc_s, dec_s = [], [], []
        for x in images:
            t0 = time.perf_counter()
            if isinstance(enc, tuple):
                data, out = jpeg(x, enc[1])
                enc_s.append(time.perf_counter() - t0)
                dec_s.append(0.0)
            else:
                data = enc(x)
                enc_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                out = dec(data)
                dec_s.append(time.perf_counter() - t0)
            bits += 8 * len(data)
            px += x.shape[1] * x.shape[2]
            psnrs.append(float(psnr(x, out)))
        rows.append({"codec": name, "bpp": bits / px, "bpp_subpixel": bits / (3 * px), "psnr": statistics.mean(psnrs),
                     "encode_s": statistics.mean(enc_s), "decode_s": statistics.mean(dec_s), "images": len(images)})
        print(f"  {name:18s} {rows[-1]['bpp']:.3f} bpp ({rows[-1]['bpp_subpixel']:.3f} per sub-pixel) "
              f"{rows[-1]['psnr']:.2f} dB  enc {rows[-1]['encode_s']:.3f} s", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiles", type=int, default=16, help="120x120 tiles to code (evenly spaced; default 16)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "aerial.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sources = aerial_sources("test")
    if not sources:
        print("the held-out aerial image is not installed: pip install --no-deps deepforest==2.1.0", file=sys.stderr)
        return 2
    image = load_image(sources[0])
    if image.dtype == torch.uint8:
        image = image.float() / 255
    H, W = image.shape[-2:]
    tiles = [image[:, y:y + 120, x:x + 120].contiguous() for y in range(0, H - 119, 120) for x in range(0, W - 119, 120)]
    step = max(1, len(tiles) // args.tiles)
    tiles = tiles[::step][: args.tiles]
    region = image[:, :1000, :1200].contiguous()
    print(f"{sources[0].name}: {W}x{H}; {len(tiles)} tiles of 120x120")
    small = measure(tiles)
    print("1200x1000 region")
    large = measure([region])
    data = neural.encode(tiles[0], "aerial", neural.available_qualities("aerial")[0])
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        zoom = decompress(data, scale=10)
        times.append(time.perf_counter() - t0)
    result = {
        "name": "aerial",
        "description": "held-out NEON orthophoto: 120x120 tiles and a 1200x1000 region; bpp = bits/(H*W), "
                       "bpp_subpixel = bits/(H*W*3) (the paper's convention)",
        "image": sources[0].name, "image_size": [W, H],
        "command": "python benchmarks/aerial.py " + " ".join(argv or sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()} ({torch.get_num_threads()} torch threads)",
        "tiles_120": small, "region_1200x1000": large,
        "decode_10x": {"input": "120x120 tile, neural aerial lowest quality", "output": list(zoom.shape[-2:]),
                       "seconds_median": statistics.median(times)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print(f"10x decode of a 120x120 file -> {tuple(zoom.shape[-2:])}: {statistics.median(times):.2f} s")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
