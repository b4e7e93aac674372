"""PIFS residual layer: an ablation on Kodak, against JPEG and WebP measured in the same run.

Every image is searched once (exhaustive, as ``rd.py``); each variant then codes qualities
1–10 from that search and is decoded and scored (bpp, PSNR-RGB, MS-SSIM-RGB of the 1× decode):

* ``fractal``: the fractal code alone (``residual=False``; what version-2 files are);
* ``+residual``: a residual layer, plain dead-zone quantisation (rounding 0.32), fractal at λ only;
* ``+rdo``: the same with rate–distortion optimised quantisation;
* ``shipped``: ``+rdo`` and the fractal part also tried at 2λ (the codec's default);
* ``stored-tables``: ``shipped`` with the fractal streams' histograms stored (payload version 4)
  instead of learnt while coding (version 5; every other variant is version 5);
* ``no-contexts``: ``shipped`` with every block in one activity class (what the contexts from the
  fractal decode are worth; files only this process can read);
* ``means+residual``: the residual over 32-px flat means only, no fractal maps (what the fractal
  maps are worth under the same residual coder).

JPEG (Pillow, optimised Huffman, 4:2:0) and WebP (method 6) sweep their quality ranges on the same
images. Reported: BD-rates against JPEG (mean curves, all points and ≤ 1.5 bpp, and the mean of
per-image BD-rates), against the fractal variant, the images where a variant's PSNR falls below
JPEG's at its own rate (up to 1 bpp), and MS-SSIM against JPEG at 0.125–0.5 bpp. ``--extra``
adds photos from the training packages (reported per image, not in the Kodak means), e.g. the
strongly textured Path wallpaper, shrunk to 768 px wide.

    python benchmarks/pifs_residual.py [--limit 24] [--workers 2]

Writes ``results/pifs_residual.json``.
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks._common import dumps  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"
EXTRA = {"Path": Path("/usr/share/wallpapers/Path/contents/images/2560x1600.jpg")}
QUALITIES = range(1, 11)
JPEG_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)
WEBP_QUALITIES = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90)
VARIANTS = ("fractal", "+residual", "+rdo", "shipped", "stored-tables", "no-contexts", "means+residual")


def _settings(variant: str) -> dict:
    """Module attributes of ``pifs.codec`` (and ``residual``) a variant changes."""
    return {
        "fractal": {},
        "+residual": {"FRACTAL_LAMBDA_MULTIPLIERS": (1.0,), "RESIDUAL_RDO": False, "RESIDUAL_ROUNDING": 0.32},
        "+rdo": {"FRACTAL_LAMBDA_MULTIPLIERS": (1.0,)},
        "shipped": {},
        "stored-tables": {},
        "no-contexts": {},
        "means+residual": {"FRACTAL_LAMBDA_MULTIPLIERS": (1e9,)},
    }[variant]


def _load(path: Path, width: int | None):
    import torch
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if width is not None and im.width > width:
            height = round(im.height * width / im.width)
            im = im.resize((width, height), Image.LANCZOS).crop((0, 0, width, height - height % 2))
        arr = np.asarray(im).copy()
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0


def _score(decoded, image, data_len: int) -> dict:
    from neural_collages.imaging.metrics import ms_ssim, psnr

    pixels = image.shape[1] * image.shape[2]
    return {"bpp": 8 * data_len / pixels, "psnr": float(psnr(decoded, image)),
            "ms-ssim": float(ms_ssim(decoded, image))}


def _pillow(image, fmt: str, quality: int) -> dict:
    import torch
    from PIL import Image

    arr = (image * 255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    options = {"optimize": True} if fmt == "JPEG" else {"method": 6}
    Image.fromarray(arr).save(buf, fmt, quality=quality, **options)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        decoded = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float() / 255.0
    return _score(decoded, image, len(buf.getvalue()))


def measure_image(job: tuple[str, str, int | None]) -> dict:
    import torch

    torch.set_num_threads(1)
    from neural_collages.codecs import decompress
    from neural_collages.codecs.pifs import PifsConfig, analyse, encode_analysed
    from neural_collages.codecs.pifs import codec as pifs_codec
    from neural_collages.codecs.pifs import residual as residual_layer
    from neural_collages.codecs.pifs import residual_encoder
    from neural_collages.coding.container import unpack

    name, path, width = job
    image = _load(Path(path), width)
    analyses = analyse(image, PifsConfig(), search="exhaustive")
    row = {"image": name, "size": list(image.shape[1:]),
           "jpeg": [_pillow(image, "JPEG", q) for q in JPEG_QUALITIES],
           "webp": [_pillow(image, "WEBP", q) for q in WEBP_QUALITIES]}
    classes = residual_layer.classes_from_activity
    for variant in VARIANTS:
        saved = {k: getattr(pifs_codec, k) for k in _settings(variant)}
        for key, value in _settings(variant).items():
            setattr(pifs_codec, key, value)
        if variant == "no-contexts":
            # The decoder and the encoder classify blocks with the same function: one class for all.
            residual_layer.classes_from_activity = residual_encoder.classes_from_activity = (
                lambda activity, step: np.zeros(activity.shape, dtype=np.int64))
        try:
            points = []
            for q in QUALITIES:
                config = PifsConfig(quality=q, adaptive_symbols=variant != "stored-tables")
                data = encode_analysed(image, analyses, config, residual=variant != "fractal")
                with torch.no_grad():
                    points.append({"quality": q, "layered": unpack(data)[0].params["res_y"] > 0,
                                   **_score(decompress(data), image, len(data))})
            row[variant] = points
        finally:
            for key, value in saved.items():
                setattr(pifs_codec, key, value)
            residual_layer.classes_from_activity = residual_encoder.classes_from_activity = classes
    return row


def _mean_curve(rows: list[dict], key: str) -> dict:
    n = len(rows[0][key])
    return {m: [float(np.mean([r[key][i][m] for r in rows])) for i in range(n)] for m in ("bpp", "psnr", "ms-ssim")}


def _bd(anchor: dict, test: dict, max_bpp: float | None = None) -> float | None:
    from neural_collages.errors import ConfigurationError
    from neural_collages.imaging.metrics import bd_rate

    def cut(c):
        keep = [i for i, b in enumerate(c["bpp"]) if max_bpp is None or b <= max_bpp]
        return [c["bpp"][i] for i in keep], [c["psnr"][i] for i in keep]

    try:
        return float(bd_rate(*cut(anchor), *cut(test)))
    except ConfigurationError:
        return None


def _curve(points: list[dict]) -> dict:
    return {m: [p[m] for p in points] for m in ("bpp", "psnr", "ms-ssim")}


def _below_jpeg(row: dict, variant: str, max_bpp: float = 1.0) -> list[dict]:
    """Points of ``variant`` up to ``max_bpp`` (inside JPEG's range) whose PSNR is below JPEG's at that rate."""
    jpeg = sorted(row["jpeg"], key=lambda p: p["bpp"])
    xs, ys = [p["bpp"] for p in jpeg], [p["psnr"] for p in jpeg]
    out = []
    for p in row[variant]:
        if xs[0] <= p["bpp"] <= min(max_bpp, xs[-1]):
            ref = float(np.interp(p["bpp"], xs, ys))
            if p["psnr"] < ref:
                out.append({"quality": p["quality"], "bpp": p["bpp"], "psnr": p["psnr"], "jpeg_psnr": ref})
    return out


def _msssim_vs_jpeg(curve: dict, jpeg: dict, rates=(0.125, 0.25, 0.375, 0.5)) -> dict:
    out = {}
    order_t, order_j = np.argsort(curve["bpp"]), np.argsort(jpeg["bpp"])
    for r in rates:
        bt, bj = np.array(curve["bpp"])[order_t], np.array(jpeg["bpp"])[order_j]
        if bt[0] <= r <= bt[-1] and bj[0] <= r <= bj[-1]:
            t = float(np.interp(r, bt, np.array(curve["ms-ssim"])[order_t]))
            j = float(np.interp(r, bj, np.array(jpeg["ms-ssim"])[order_j]))
            out[str(r)] = {"ours": t, "jpeg": j}
    return out


def summarise(rows: list[dict]) -> dict:
    jpeg = _mean_curve(rows, "jpeg")
    summary = {"jpeg": jpeg, "webp": _mean_curve(rows, "webp"),
               "bd_vs_jpeg": {"webp": _bd(jpeg, _mean_curve(rows, "webp"))}}
    fractal = _mean_curve(rows, "fractal")
    for variant in VARIANTS:
        curve = _mean_curve(rows, variant)
        per_image = [_bd(_curve(r["jpeg"]), _curve(r[variant])) for r in rows]
        summary[variant] = {
            "curve": curve,
            "bd_vs_jpeg": _bd(jpeg, curve),
            "bd_vs_jpeg_le_1.5bpp": _bd(jpeg, curve, 1.5),
            "bd_vs_jpeg_per_image_mean": float(np.mean([b for b in per_image if b is not None])),
            "bd_vs_fractal": _bd(fractal, curve),
            "images_below_jpeg_le_1bpp": {r["image"]: b for r in rows if (b := _below_jpeg(r, variant))},
            "ms_ssim_vs_jpeg": _msssim_vs_jpeg(curve, jpeg),
            "layered_points": int(sum(p.get("layered", False) for r in rows for p in r[variant])),
        }
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--extra", nargs="*", default=sorted(EXTRA), help="training-package photos to add")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pifs_residual.json")
    args = parser.parse_args(argv)
    kodak = sorted(KODAK.glob("kodim*.png"))[: args.limit]
    jobs = [(p.name, str(p), None) for p in kodak]
    jobs += [(name, str(EXTRA[name]), 768) for name in args.extra if EXTRA[name].exists()]
    from tqdm.auto import tqdm

    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(tqdm(pool.map(measure_image, jobs), total=len(jobs), desc="images"))
    kodak_rows = [r for r in rows if r["image"].startswith("kodim")]
    extra_rows = [r for r in rows if not r["image"].startswith("kodim")]
    result = {
        "name": "pifs-residual-ablation",
        "command": "python benchmarks/pifs_residual.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()} ({platform.machine()}), 1 torch thread per worker",
        "images": [r["image"] for r in kodak_rows],
        "summary": summarise(kodak_rows),
        "extra": {r["image"]: {"bd_vs_jpeg": {v: _bd(_curve(r["jpeg"]), _curve(r[v])) for v in (*VARIANTS, "webp")},
                               "below_jpeg_le_1bpp": {v: _below_jpeg(r, v) for v in ("fractal", "shipped")}}
                  for r in extra_rows},
        "per_image": rows,
    }
    args.out.write_text(dumps(result) + "\n")
    s = result["summary"]
    print(f"Kodak ({len(kodak_rows)} images): BD-rate vs JPEG, all points / ≤1.5 bpp / per-image mean; vs fractal")
    print(f"  webp            {s['bd_vs_jpeg']['webp']:+.1f} %")
    for v in VARIANTS:
        e = s[v]
        print(f"  {v:15s} {e['bd_vs_jpeg']:+.1f} % / {e['bd_vs_jpeg_le_1.5bpp']:+.1f} % / "
              f"{e['bd_vs_jpeg_per_image_mean']:+.1f} %; vs fractal {e['bd_vs_fractal']:+.1f} %; "
              f"images below JPEG ≤1 bpp: {len(e['images_below_jpeg_le_1bpp'])}")
    for name, e in result["extra"].items():
        print(f"  {name}: " + ", ".join(f"{k} {v:+.1f} %" for k, v in e["bd_vs_jpeg"].items() if v is not None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
