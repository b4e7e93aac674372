"""Neural Collage codec speed against the exhaustive fractal (PIFS) codec, in one run.

For each image and each shipped quality it measures the Neural Collage encode and decode
(medians of repeats), and once per image the PIFS encode at ``--pifs-quality`` (one full
``collage compress`` encode: search, RD decisions, entropy coding), on the same machine, in the
same process and thread setting. It reports the bpp of both and the ratio PIFS encode time /
neural encode time at the neural quality whose bpp is closest to the PIFS file's.

    python benchmarks/neural_speed.py [--images DIR] [--limit N] [--repeats R] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks._common import png_images, timed  # noqa: E402
from neural_collages.codecs import decompress, neural, pifs  # noqa: E402
from neural_collages.imaging.io import load_image  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "kodak")
    p.add_argument("--limit", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pifs-quality", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "neural_speed.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = png_images(args.images, args.limit)
    qualities = neural.available_qualities("photo")
    for q in qualities:  # load the models before timing
        neural.load_named_model(neural.model_name("photo", q))
    rows = []
    for path in paths:
        image = load_image(path)
        if image.dtype == torch.uint8:
            image = image.float() / 255
        H, W = image.shape[-2:]
        row = {"image": path.name, "neural": {}}
        for q in qualities:
            data, enc = timed(lambda: neural.encode(image, "photo", q), args.repeats)
            _, dec = timed(lambda: decompress(data), args.repeats)
            row["neural"][q] = {"bpp": 8 * len(data) / (H * W), "encode_s": enc, "decode_s": dec}
        data, enc = timed(lambda: pifs.encode(image, pifs.PifsConfig(quality=args.pifs_quality)), 1)
        _, dec = timed(lambda: decompress(data), args.repeats)
        row["pifs"] = {"quality": args.pifs_quality, "bpp": 8 * len(data) / (H * W), "encode_s": enc, "decode_s": dec}
        closest = min(qualities, key=lambda q: abs(row["neural"][q]["bpp"] - row["pifs"]["bpp"]))
        row["closest_neural_quality"] = closest
        row["pifs_over_neural_encode"] = enc / row["neural"][closest]["encode_s"]
        rows.append(row)
        print(f"{path.name}: pifs q{args.pifs_quality} {row['pifs']['bpp']:.3f} bpp encode {enc:.2f} s; neural q{closest} "
              f"{row['neural'][closest]['bpp']:.3f} bpp encode {row['neural'][closest]['encode_s']:.3f} s "
              f"-> {row['pifs_over_neural_encode']:.0f}x faster", flush=True)
    summary = {
        "neural_encode_s_median": {q: statistics.median(r["neural"][q]["encode_s"] for r in rows) for q in qualities},
        "neural_decode_s_median": {q: statistics.median(r["neural"][q]["decode_s"] for r in rows) for q in qualities},
        "pifs_encode_s_median": statistics.median(r["pifs"]["encode_s"] for r in rows),
        "pifs_decode_s_median": statistics.median(r["pifs"]["decode_s"] for r in rows),
        "pifs_over_neural_encode_median": statistics.median(r["pifs_over_neural_encode"] for r in rows),
    }
    result = {
        "name": "neural_speed",
        "description": "Neural Collage encode/decode vs the exhaustive PIFS encoder, same run, same threads",
        "command": "python benchmarks/" + Path(__file__).name + " " + " ".join(argv or sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()} ({torch.get_num_threads()} torch threads)",
        "summary": summary,
        "per_image": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
