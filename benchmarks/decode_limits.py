"""Decompression bombs: time and peak memory of the largest decodes the pixel limit allows.

For every codec it compresses one Kodak image (kodim01, 768×512) and decodes the file at 1×
(median of ``--repeats`` after a warm-up decode in the same process) and at the largest scale within ``limits.MAX_PIXELS`` (13×: 66.4 Mpixel),
and it decodes a crafted 233-byte PIFS file that declares a flat 8192×8192 RGB image (2^26
pixels, the bomb of issue 12). Every case runs in a fresh subprocess that decodes the file to 8-bit
levels (``dtype=torch.uint8``) and writes a PNG, as ``collage decompress`` does, timed around the decode only (a large decode includes its one-time
set-up, which is negligible there), its peak resident memory read from
``getrusage`` after the decode and again after writing the PNG. Reported per case: output
pixels, decode seconds, nanoseconds per output pixel and its ratio to the same codec's 1×
decode measured in the same run, the peak RSS of the decode and of the whole run, and bytes
per output pixel (the Python + torch baseline, ~0.3 GB, included). The bomb is decoded once more to the
float32 image the Python API returns by default (0.75 GiB at 2^26 RGB pixels), for the difference.

    python benchmarks/decode_limits.py [--image PATH] [--repeats R] [--threads N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks._common import dumps  # noqa: E402

#: Runs in the child: decode to PNG, print decode seconds, peak RSS and the output size as JSON.
CHILD = r"""
import json, resource, statistics, sys, time
import torch
from neural_collages.codecs import decompress
from neural_collages.imaging.io import save_image
path, scale, out, threads, repeats = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
dtype = getattr(torch, sys.argv[6])
torch.set_num_threads(threads)
data = open(path, "rb").read()
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    image = decompress(data, scale=scale, dtype=dtype)
    times.append(time.perf_counter() - t0)
decode_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
save_image(image, out, force=True)
# With repeats, the first decode (model loading, first-call set-up) is a warm-up.
seconds = statistics.median(times[1:] if len(times) > 1 else times)
print(json.dumps({"seconds": seconds, "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "decode_peak_bytes": decode_peak, "pixels": image.shape[-1] * image.shape[-2]}))
"""

def flat_bomb(side: int = 8192) -> bytes:
    """A valid PIFS file declaring a flat ``side × side`` RGB image: every 32-px block flat, mean 0."""
    import numpy as np

    from neural_collages.codecs.pifs.analysis import plane_layouts
    from neural_collages.codecs.pifs.bitstream import stream_specs
    from neural_collages.codecs.pifs.config import PifsConfig
    from neural_collages.coding.container import ContainerHeader, pack
    from neural_collages.coding.streams import encode_streams

    # Version 4 (stored histograms): a constant stream then costs no coded bits, so the file stays
    # the 233 bytes of issue 12 (adaptive version-5 streams would take 352).
    config = PifsConfig(adaptive_symbols=False)
    layouts = plane_layouts(side, side, 3, config)
    values = {}
    for layout in layouts:
        H, W = layout.padded
        tops = (H // config.block_sizes[0]) * (W // config.block_sizes[0])
        p = layout.name
        values[f"{p}.split"] = np.zeros(tops, dtype=np.int64)
        for level in range(len(config.block_sizes)):
            values[f"{p}.s{level}"] = np.zeros(tops if level == 0 else 0, dtype=np.int64)
            values[f"{p}.dom{level}"] = np.zeros(0, dtype=np.int64)
        values[f"{p}.iso"] = np.zeros(0, dtype=np.int64)
        values[f"{p}.mean"] = np.zeros(tops, dtype=np.int64)
    payload = encode_streams(stream_specs(layouts, config), values)
    return pack(ContainerHeader("pifs", side, side, 3, config.to_params()), payload)


def decode(path: Path, scale: int, work: Path, threads: int, repeats: int = 1, dtype: str = "uint8") -> dict:
    out = work / "out.png"
    result = subprocess.run([sys.executable, "-c", CHILD, str(path), str(scale), str(out), str(threads), str(repeats),
                             dtype],
                            capture_output=True, text=True, check=True, env={"PYTHONPATH": str(ROOT / "src")})
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=ROOT.parent / "shared" / "data" / "kodak" / "kodim01.png")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "decode_limits.json")
    args = parser.parse_args(argv)

    from neural_collages import limits
    from neural_collages.codecs import compress
    from neural_collages.codecs.fractal_art import encode_art
    from neural_collages.fractal_art import fractalize
    from neural_collages.imaging.io import load_image

    image = load_image(args.image)
    H, W = image.shape[1:]
    big = int((limits.MAX_PIXELS / (H * W)) ** 0.5)
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = {
            "pifs": compress(image, codec="pifs", quality=4),
            "neural": compress(image, codec="neural", quality=2),
            "fractal-art": encode_art(fractalize(image)[0]),
        }
        for name, data in files.items():
            path = work / f"{name}.clg"
            path.write_bytes(data)
            one = decode(path, 1, work, args.threads, args.repeats + 1)
            base = one["seconds"] / one["pixels"]
            large = decode(path, big, work, args.threads)
            for label, r, seconds in ((f"{name} 1x", one, one["seconds"]), (f"{name} {big}x", large, large["seconds"])):
                cases.append({"case": label, "file_bytes": len(data), "pixels": r["pixels"], "seconds": seconds,
                              "ns_per_pixel": 1e9 * seconds / r["pixels"],
                              "per_pixel_vs_1x": seconds / r["pixels"] / base,
                              "decode_peak_rss_bytes": r["decode_peak_bytes"], "peak_rss_bytes": r["peak_bytes"],
                              "bytes_per_pixel": r["peak_bytes"] / r["pixels"]})
                print(f"{label:18s} {r['pixels']:>11,} px {seconds:7.2f} s  {cases[-1]['ns_per_pixel']:6.0f} ns/px "
                      f"x{cases[-1]['per_pixel_vs_1x']:.2f}  decode peak {r['decode_peak_bytes'] / 2**30:.2f} GiB, "
                      f"with the PNG {r['peak_bytes'] / 2**30:.2f} GiB", flush=True)
        bomb = work / "bomb.clg"
        bomb.write_bytes(flat_bomb())
        pifs_base = cases[0]["ns_per_pixel"] / 1e9
        for label, dtype in (("pifs flat 8192x8192 bomb", "uint8"), ("pifs flat 8192x8192 bomb, float32 API", "float32")):
            r = decode(bomb, 1, work, args.threads, dtype=dtype)
            cases.append({"case": label, "file_bytes": bomb.stat().st_size, "pixels": r["pixels"],
                          "seconds": r["seconds"], "ns_per_pixel": 1e9 * r["seconds"] / r["pixels"],
                          "per_pixel_vs_1x": r["seconds"] / r["pixels"] / pifs_base,
                          "decode_peak_rss_bytes": r["decode_peak_bytes"], "peak_rss_bytes": r["peak_bytes"],
                          "bytes_per_pixel": r["peak_bytes"] / r["pixels"]})
            print(f"{label} {r['pixels']:,} px {r['seconds']:.2f} s decode peak "
                  f"{r['decode_peak_bytes'] / 2**30:.2f} GiB, with the PNG {r['peak_bytes'] / 2**30:.2f} GiB")
    result = {"name": "decode_limits", "image": args.image.name, "max_pixels": limits.MAX_PIXELS,
              "repeats_1x": args.repeats, "threads": args.threads, "machine": platform.processor() or platform.machine(),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cases": cases}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
