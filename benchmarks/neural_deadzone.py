"""The Neural Collage encoder's rounding dead zone, measured: BD-rate against rounding to nearest.

For each dead zone it encodes the images with every shipped photo quality (the model files'
own dead zone is overridden) and reports the RD points and the BD-rate against dead zone 0,
all in one run. The decoder does not depend on the dead zone.

    python benchmarks/neural_deadzone.py [--images DIR] [--names kodim01 ...] [--deadzones 0 0.1 0.2 0.3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from neural_collages.codecs import decompress, neural  # noqa: E402
from neural_collages.imaging.io import load_image  # noqa: E402
from neural_collages.imaging.metrics import bd_rate, psnr  # noqa: E402

DEFAULT_NAMES = ["kodim01", "kodim05", "kodim08", "kodim15", "kodim19", "kodim23"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "kodak")
    p.add_argument("--names", nargs="+", default=DEFAULT_NAMES)
    p.add_argument("--deadzones", nargs="+", type=float, default=[0.0, 0.1, 0.2, 0.3])
    p.add_argument("--model", default="photo")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "neural_deadzone.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = []
    for name in args.names:
        path = args.images / f"{name}.png"
        if not path.is_file():
            print(f"missing {path}", file=sys.stderr)
            return 2
        image = load_image(path)
        images.append(image.float() / 255 if image.dtype == torch.uint8 else image)
    qualities = neural.available_qualities(args.model)
    loaded = {q: neural.load_named_model(neural.model_name(args.model, q)) for q in qualities}
    originals = {q: m.model.config for q, m in loaded.items()}
    curves = {}
    try:
        for dz in args.deadzones:
            points = []
            for q in qualities:
                loaded[q].model.config = dataclasses.replace(originals[q], encoder_deadzone=dz)
                bits = pixels = 0
                quality = []
                for x in images:
                    data = neural.encode(x, args.model, q)
                    bits += 8 * len(data)
                    pixels += x.shape[1] * x.shape[2]
                    quality.append(float(psnr(x, decompress(data))))
                points.append({"quality": q, "bpp": bits / pixels, "psnr-rgb": sum(quality) / len(quality)})
            curves[dz] = points
            print(f"dead zone {dz}: " + ", ".join(f"{pt['bpp']:.4f} bpp {pt['psnr-rgb']:.2f} dB" for pt in points),
                  flush=True)
    finally:
        for q, m in loaded.items():
            m.model.config = originals[q]
    base = curves[args.deadzones[0]]
    summary = {}
    for dz, points in curves.items():
        summary[str(dz)] = bd_rate([p["bpp"] for p in base], [p["psnr-rgb"] for p in base],
                                   [p["bpp"] for p in points], [p["psnr-rgb"] for p in points])
        print(f"BD-rate of dead zone {dz} vs {args.deadzones[0]}: {summary[str(dz)]:+.1f} %")
    result = {
        "name": "neural_deadzone",
        "description": f"Neural Collage encoder dead zone, {args.model} models, mean over {len(images)} images; "
                       "bd_rate_percent against the first dead zone",
        "command": "python benchmarks/neural_deadzone.py " + " ".join(argv or sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "images": args.names,
        "curves": {str(k): v for k, v in curves.items()},
        "bd_rate_percent": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
