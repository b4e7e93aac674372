"""Fractal zoom against interpolation, with a true high-resolution image to compare against.

Each Kodak image (768×512, the held-out test set) is the truth; its 4× box-averaged reduction
(192×128) is what gets compressed. The file is decoded at 1× and at 4× (``--scale 4``), and the
4× decode is scored against the true image next to Lanczos and bicubic upscaling (Pillow) of
the same file's 1× decode, and of the uncompressed reduction (the interpolation ceiling). The
codec adds detail only where its 4× decode beats the upscaled 1× decode of the same file.

    python benchmarks/zoom.py [--images DIR] [--limit N] [--threads T]

Writes ``benchmarks/results/zoom.json`` and ``benchmarks/results/zoom.png`` (crops of one image).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1])]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks._common import BENCH, DEFAULT_IMAGES, dumps, png_images  # noqa: E402
from neural_collages.codecs import compress, decompress  # noqa: E402
from neural_collages.imaging.io import atomic_write_bytes, load_image, to_uint8  # noqa: E402
from neural_collages.imaging.metrics import psnr  # noqa: E402

FACTOR = 4
#: (label, codec, quality): two rates per codec, about 0.5 and 1.5 bpp on the reduced images.
SETTINGS = [("neural q3", "neural", 3), ("neural q5", "neural", 5), ("pifs q4", "pifs", 4), ("pifs q7", "pifs", 7)]


def to_pil(x: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(x).permute(1, 2, 0).contiguous().numpy())


def from_pil(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255.0


def upscale(x: torch.Tensor, size: tuple[int, int], method) -> torch.Tensor:
    return from_pil(to_pil(x).resize(size, method))


def sharpness(x: torch.Tensor) -> float:
    """Mean absolute gradient of the luma (both axes), in 8-bit units: what blur lowers and seams raise."""
    y = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]) * 255
    return float(0.5 * ((y[1:] - y[:-1]).abs().mean() + (y[:, 1:] - y[:, :-1]).abs().mean()))


def measure(truth: torch.Tensor) -> tuple[dict, dict]:
    """PSNR against ``truth`` of every setting's 4× decode and upscaled 1× decodes; the 4× images."""
    H, W = truth.shape[-2:]
    small = torch.nn.functional.avg_pool2d(truth[None], FACTOR)[0]
    size = (W, H)
    row = {"lanczos of the reduction": float(psnr(upscale(small, size, Image.LANCZOS), truth)),
           "bicubic of the reduction": float(psnr(upscale(small, size, Image.BICUBIC), truth)),
           "truth_sharpness": sharpness(truth)}
    images = {"truth": truth, "lanczos of the reduction": upscale(small, size, Image.LANCZOS)}
    for label, codec, quality in SETTINGS:
        data = compress(small, codec, quality)
        one = decompress(data)
        zoomed = decompress(data, scale=FACTOR)
        lanczos = upscale(one, size, Image.LANCZOS)
        row[label] = {
            "bpp_reduced": 8 * len(data) / (small.shape[1] * small.shape[2]),
            "psnr_1x_vs_reduction": float(psnr(one, small)),
            "psnr_zoom_4x": float(psnr(zoomed, truth)),
            "psnr_lanczos_of_1x": float(psnr(lanczos, truth)),
            "psnr_bicubic_of_1x": float(psnr(upscale(one, size, Image.BICUBIC), truth)),
            # sharpness relative to the true image's: below 1 blurrier, above 1 edges (or seams) it lacks
            "sharpness_zoom_vs_truth": sharpness(zoomed) / row["truth_sharpness"],
            "sharpness_lanczos_of_1x_vs_truth": sharpness(lanczos) / row["truth_sharpness"],
        }
        images[f"{label}: 4x decode"] = zoomed
        images[f"{label}: lanczos of 1x"] = lanczos
    return row, images


def summarise(rows: list[dict]) -> dict:
    out = {k: statistics.mean(r[k] for r in rows)
           for k in ("lanczos of the reduction", "bicubic of the reduction", "truth_sharpness")}
    for label, _, _ in SETTINGS:
        keys = rows[0][label].keys()
        out[label] = {k: statistics.mean(r[label][k] for r in rows) for k in keys}
        out[label]["zoom_minus_lanczos_db"] = out[label]["psnr_zoom_4x"] - out[label]["psnr_lanczos_of_1x"]
        out[label]["zoom_beats_lanczos_images"] = sum(
            r[label]["psnr_zoom_4x"] > r[label]["psnr_lanczos_of_1x"] for r in rows)
    return out


def figure(images: dict, out: Path, box=(300, 160, 460, 280)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["truth", "lanczos of the reduction"] + [n for n in images if n.startswith(("neural q3", "pifs q4"))]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4))
    x0, y0, x1, y1 = box
    for ax, name in zip(axes.ravel(), names):
        ax.imshow(to_uint8(images[name][:, y0:y1, x0:x1]).permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    H, W = images["truth"].shape[-2:]
    fig.suptitle(f"4x zoom of a {W // FACTOR}x{H // FACTOR} file against the true {W}x{H} image (crop)")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue(), force=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    p.add_argument("--limit", type=int, default=None, help="first N images (sorted by name)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=BENCH / "results" / "zoom.json")
    p.add_argument("--figure-image", default="kodim05.png", help="image whose crops the figure shows")
    p.add_argument("--box", type=int, nargs=4, default=(300, 160, 460, 280), metavar=("X0", "Y0", "X1", "Y1"),
                   help="the figure's crop of the true image (pixels)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = png_images(args.images, args.limit)
    rows, shown = [], None
    for path in paths:
        truth = load_image(path).float()
        truth = truth[:, : truth.shape[1] // (8 * FACTOR) * 8 * FACTOR, : truth.shape[2] // (8 * FACTOR) * 8 * FACTOR]
        row, images = measure(truth.contiguous())
        rows.append({"image": path.name, **row})
        if path.name == args.figure_image or shown is None:
            shown = images
        print(path.name, {k: (round(v["psnr_zoom_4x"] - v["psnr_lanczos_of_1x"], 2) if isinstance(v, dict) else None)
                          for k, v in row.items() if isinstance(v, dict)}, flush=True)
    result = {
        "name": "zoom",
        "description": f"the PNG images of {args.images} reduced 4x (box average), compressed, decoded at 4x; "
                       "PSNR-RGB and luma sharpness (mean absolute gradient) against the true image, next to "
                       "Lanczos/bicubic upscaling (Pillow) of the same file's 1x decode",
        "command": "python benchmarks/zoom.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()} ({torch.get_num_threads()} torch threads)",
        "summary": summarise(rows),
        "per_image": rows,
    }
    atomic_write_bytes(args.out, dumps(result).encode(), force=True)
    figure(shown, args.out.with_suffix(".png"), tuple(args.box))
    print(dumps(result["summary"]))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
