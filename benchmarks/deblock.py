"""PIFS deblocking on Kodak: PSNR, MS-SSIM and blockiness with and without the file's filter.

For each image the domain search runs once and every ``--qualities`` level is coded from it (as
``collage compress`` would code it: the encoder names the deblocking preset that decodes best).
Each file is decoded with its preset and with deblocking off (``PifsConfig.deblock = 0``, the
same payload). Blockiness: the mean absolute horizontal and vertical luma step across the 4-px
grid (where block borders can lie) over the mean step elsewhere; 1 is no excess at the grid.
Scale: the 4x decode average-pooled against the 1x decode (PSNR), with and without the filter.

    python benchmarks/deblock.py [--limit N] [--qualities 1,2,4,6] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_IMAGES, ROOT, dumps, setup_paths  # noqa: E402

setup_paths()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from neural_collages.codecs.pifs.analysis import analyse  # noqa: E402
from neural_collages.codecs.pifs.codec import decode_parts, encode_analysed  # noqa: E402
from neural_collages.codecs.pifs.config import PifsConfig  # noqa: E402
from neural_collages.coding.container import unpack  # noqa: E402
from neural_collages.imaging.io import load_image  # noqa: E402
from neural_collages.imaging.metrics import ms_ssim, psnr  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "deblock.json"


def blockiness(image: torch.Tensor, cell: int = 4) -> float:
    """Mean |step| across the ``cell``-px grid over the mean |step| elsewhere, on BT.601 luma."""
    y = (image * 255).mul(torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0) if image.shape[0] == 3 else image[0] * 255
    steps = []
    for g in (y.diff(dim=1).abs(), y.diff(dim=0).abs().T):
        on = torch.zeros(g.shape[1], dtype=torch.bool)
        on[cell - 1 :: cell] = True  # the step between pixel cell·k − 1 and cell·k
        steps.append((g[:, on].mean(), g[:, ~on].mean()))
    return float(sum(a for a, _ in steps) / sum(b for _, b in steps))


def measure(path: Path, qualities: list[int]) -> list[dict]:
    image = load_image(path)
    analyses = analyse(image, PifsConfig())
    rows = []
    for q in qualities:
        data = encode_analysed(image, analyses, PifsConfig(quality=q))
        header, payload = unpack(data)
        config = PifsConfig.from_params(header.params)
        row = {"image": path.name, "quality": q, "bpp": 8 * len(data) / (image.shape[1] * image.shape[2]),
               "preset": config.deblock}
        for label, preset in (("off", 0), ("on", config.deblock)):
            c = replace(config, deblock=preset)
            one = decode_parts(header, payload, c, 1)
            four = decode_parts(header, payload, c, 4)
            row[label] = {"psnr": float(psnr(image, one)), "ms_ssim": float(ms_ssim(image[None], one[None])),
                          "blockiness": blockiness(one), "blockiness_4x": blockiness(four, 16),
                          "pooled_4x_vs_1x_psnr": float(psnr(one, F.avg_pool2d(four[None], 4)[0]))}
        rows.append(row)
        print(path.name, q, f"{row['bpp']:.3f} bpp preset {row['preset']}", {k: round(v, 3) for k, v in row["on"].items()},
              {k: round(v, 3) for k, v in row["off"].items()}, flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--qualities", default="1,2,4,6")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    qualities = [int(q) for q in args.qualities.split(",")]
    rows = []
    for path in sorted(args.images.glob("*.png"))[: args.limit]:
        rows += measure(path, qualities)
    summary = {}
    for q in qualities:
        sel = [r for r in rows if r["quality"] == q]
        summary[f"q{q}"] = {
            "bpp": statistics.mean(r["bpp"] for r in sel),
            "files_deblocked": sum(r["preset"] != 0 for r in sel),
            **{f"{m}_{label}": statistics.mean(r[label][m] for r in sel) for m in
               ("psnr", "ms_ssim", "blockiness", "blockiness_4x", "pooled_4x_vs_1x_psnr") for label in ("off", "on")},
        }
    result = {"name": "pifs-deblock", "description": __doc__.splitlines()[0],
              "meta": {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "machine": f"{platform.platform()}, {platform.machine()}", "torch": torch.__version__,
                       "command": "python benchmarks/deblock.py " + " ".join(argv if argv is not None else sys.argv[1:])},
              "summary": summary, "results": rows}
    args.out.write_text(dumps(result))
    print(dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
