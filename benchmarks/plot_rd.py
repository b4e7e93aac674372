"""Plot and tabulate rate–distortion results: every ``*.json`` of a results folder (written by
``benchmarks/rd.py``) next to the published curves of ``benchmarks/published/kodak.json``.

    python benchmarks/plot_rd.py [--results benchmarks/results/kodak] [--published FILE | --no-published]
                                 [--xmax 1.5] [--anchor jpeg] [--out RESULTS/rd.png]

Draws PSNR-RGB vs bpp and MS-SSIM-RGB vs bpp side by side (measured curves solid with markers,
published ones dashed, labelled "(published)"; published curves have no MS-SSIM), saves the PNG,
and prints a markdown summary that is also written to ``RESULTS/summary.md``: PSNR at 0.25, 0.5,
0.75 and 1 bpp for every curve (linear interpolation in bpp, '–' outside the curve's range) and,
for the measured codecs, the mean times and the Bjøntegaard deltas against ``--anchor``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/plot_rd.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._common import setup_paths
else:
    from ._common import setup_paths
setup_paths()

import numpy as np  # noqa: E402

from benchmarks._common import DEFAULT_OUT, DEFAULT_PUBLISHED, ROOT  # noqa: E402

TABLE_BPP = (0.25, 0.5, 0.75, 1.0)
DASH = "–"


class PlotError(Exception):
    """Unusable input (missing folder, no results): one line, exit status 2."""


# --------------------------------------------------------------------------- loading


def _curve_ok(results: dict, keys=("bpp", "psnr-rgb")) -> bool:
    if not isinstance(results, dict):
        return False
    try:
        lengths = {len(results[k]) for k in keys}
    except (KeyError, TypeError):
        return False
    return len(lengths) == 1 and lengths.pop() > 0


def load_measured(results_dir: Path) -> list[dict]:
    """The measured curves of ``results_dir/*.json`` (files that are not results are skipped with
    a warning), sorted by name."""
    if not results_dir.is_dir():
        raise PlotError(f"results folder {results_dir} does not exist")
    curves = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"plot_rd.py: skipping {path.name}: not readable JSON ({exc})", file=sys.stderr)
            continue
        if not isinstance(doc, dict) or not _curve_ok(doc.get("results")):
            print(f"plot_rd.py: skipping {path.name}: no results.bpp / results.psnr-rgb", file=sys.stderr)
            continue
        doc.setdefault("name", path.stem)
        doc["published"] = False
        curves.append(doc)
    return curves


def load_published(path: Path | None) -> list[dict]:
    """The curves of a published-results file (``{"codecs": [...]}`` or a bare list)."""
    if path is None:
        return []
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlotError(f"cannot read published results {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise PlotError(f"published results {path} are not valid JSON: {exc}") from None
    entries = doc.get("codecs", []) if isinstance(doc, dict) else doc
    curves = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and _curve_ok(entry.get("results")):
            curves.append({**entry, "published": True})
    return curves


def _points(curve: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, metric) of a curve, sorted by bpp, points with a missing value dropped."""
    res = curve["results"]
    if key not in res:
        return np.zeros(0), np.zeros(0)
    pairs = [(float(b), float(v)) for b, v in zip(res["bpp"], res[key])
             if b is not None and v is not None and math.isfinite(b) and math.isfinite(v)]
    pairs.sort()
    if not pairs:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*pairs)
    return np.asarray(x), np.asarray(y)


def interpolate(x: np.ndarray, y: np.ndarray, at: float) -> float | None:
    """Linear interpolation in bpp; ``None`` outside ``[min(x), max(x)]``."""
    if x.size == 0 or at < x[0] or at > x[-1]:
        return None
    return float(np.interp(at, x, y))


def label(curve: dict) -> str:
    return f"{curve['name']} ({'published' if curve.get('published') else 'measured'})"


def _msssim_db(v: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return -10.0 * np.log10(np.clip(1.0 - v, 1e-12, None))


# --------------------------------------------------------------------------- plot


def plot(measured: list[dict], published: list[dict], out_png: Path, xmax: float = 1.5, title: str = "") -> Path:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(14, 6), dpi=110, layout="constrained")
    ax_psnr, ax_ssim = fig.subplots(1, 2)
    strong, pale = _colours(len(measured), len(published))
    lo, hi = [], []

    def track(x, y):
        keep = x <= xmax
        vals = list(y[keep])
        if x.size and x[-1] > xmax and x[0] <= xmax:
            vals.append(float(np.interp(xmax, x, y)))
        lo.extend(vals)
        hi.extend(vals)

    for i, curve in enumerate(measured):
        x, y = _points(curve, "psnr-rgb")
        style = dict(color=strong[i], marker=MARKERS[i % len(MARKERS)], lw=2.0, ms=5, label=label(curve), zorder=3)
        ax_psnr.plot(x, y, "-", **style)
        track(x, y)
        xs, ys = _points(curve, "ms-ssim-rgb")
        if xs.size:
            ax_ssim.plot(xs, _msssim_db(ys), "-", **style)
    for j, curve in enumerate(published):
        x, y = _points(curve, "psnr-rgb")
        style = dict(color=pale[j], marker=".", lw=1.2, ms=5, alpha=0.85, label=label(curve), zorder=2)
        ax_psnr.plot(x, y, "--", **style)
        track(x, y)
        xs, ys = _points(curve, "ms-ssim-rgb")
        if xs.size:
            ax_ssim.plot(xs, _msssim_db(ys), "--", **style)

    ax_psnr.set_xlim(0, xmax)
    if lo:
        ax_psnr.set_ylim(math.floor(min(lo)) - 0.5, math.ceil(max(hi)) + 0.5)
    ax_psnr.set_xlabel("bits per pixel (bpp)")
    ax_psnr.set_ylabel("PSNR-RGB (dB)")
    ax_psnr.set_title("PSNR-RGB vs rate")
    ax_psnr.legend(fontsize=7, loc="lower right", ncol=1 if len(measured) + len(published) < 9 else 2)

    ax_ssim.set_xlim(0, xmax)
    vals = []
    for line in ax_ssim.get_lines():
        x, y = line.get_data()
        x, y = np.asarray(x), np.asarray(y)
        vals.extend(y[x <= xmax])
    if vals:
        ax_ssim.set_ylim(math.floor(min(vals)) - 0.5, math.ceil(max(vals)) + 0.5)
    ax_ssim.set_xlabel("bits per pixel (bpp)")
    ax_ssim.set_ylabel("MS-SSIM-RGB (dB) = −10·log10(1 − MS-SSIM)")
    ax_ssim.set_title("MS-SSIM-RGB vs rate (measured codecs only)")
    if ax_ssim.get_lines():
        ax_ssim.legend(fontsize=8, loc="lower right")
    for ax in (ax_psnr, ax_ssim):
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    return out_png


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# Measured curves: black first (the anchor), then saturated colours; published: the tab10 cycle.
_STRONG = ("#000000", "#d62728", "#1f3fbf", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _colours(n_measured: int, n_published: int) -> tuple[list, list]:
    from matplotlib import colormaps

    strong = [_STRONG[i % len(_STRONG)] for i in range(n_measured)]
    cmap = colormaps["tab10"] if n_published <= 10 else colormaps["tab20"]
    return strong, [cmap(i % cmap.N) for i in range(n_published)]


# --------------------------------------------------------------------------- tables


def _fmt(value: float | None, digits: int = 2) -> str:
    return DASH if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def psnr_table(curves: list[dict]) -> list[str]:
    head = "| codec | " + " | ".join(f"{b:g} bpp" for b in TABLE_BPP) + " | bpp range |"
    rows = [head, "|---|" + "---:|" * len(TABLE_BPP) + "---|"]
    for curve in curves:
        x, y = _points(curve, "psnr-rgb")
        cells = [_fmt(interpolate(x, y, b)) for b in TABLE_BPP]
        span = f"{x[0]:.3f}–{x[-1]:.3f}" if x.size else DASH
        rows.append(f"| {label(curve)} | " + " | ".join(cells) + f" | {span} |")
    return rows


def _bd(anchor: dict, curve: dict, max_bpp: float | None) -> tuple[float | None, float | None]:
    from neural_collages.errors import CollageError
    from neural_collages.imaging.metrics import bd_psnr, bd_rate

    xa, ya = _points(anchor, "psnr-rgb")
    xt, yt = _points(curve, "psnr-rgb")
    if max_bpp is not None:
        xa, ya, xt, yt = xa[xa <= max_bpp], ya[xa <= max_bpp], xt[xt <= max_bpp], yt[xt <= max_bpp]
    try:
        return bd_rate(xa, ya, xt, yt), bd_psnr(xa, ya, xt, yt)
    except (CollageError, ValueError):
        return None, None


def _per_image_bd(anchor: dict, curve: dict) -> float | None:
    """Mean over the images both curves measured of each image's own BD-rate (PCHIP, all points).

    The mean-curve BD-rate mixes images at different rates at one quality; a codec whose encoder
    adapts per image (a model or filter chosen by rate–distortion cost) moves single images along
    their own curves, which the per-image figure follows and the mean curve does not."""
    from neural_collages.errors import CollageError
    from neural_collages.imaging.metrics import bd_rate

    anchors = {r.get("image"): r for r in anchor.get("per_image") or []}
    deltas = []
    for row in curve.get("per_image") or []:
        base = anchors.get(row.get("image"))
        if base is None:
            continue
        # Identical files at two qualities give one point, not two.
        points = sorted({(b, q) for b, q in zip(row["bpp"], row["psnr-rgb"]) if b is not None and q is not None})
        try:
            deltas.append(bd_rate(base["bpp"], base["psnr-rgb"], [b for b, _ in points], [q for _, q in points]))
        except (CollageError, ValueError, KeyError):
            continue
    return float(np.mean(deltas)) if deltas else None


def _mean_time(curve: dict, key: str) -> float | None:
    values = [v for v in curve["results"].get(key, []) if v is not None]
    return float(np.mean(values)) if values else None


def measured_table(measured: list[dict], anchor_name: str, xmax: float) -> list[str]:
    anchor = next((c for c in measured if c["name"] == anchor_name), None)
    rows = [
        f"| codec | qualities | encode s/image | decode s/image | BD-rate vs {anchor_name} (all points) "
        f"| BD-PSNR vs {anchor_name} (all points) | BD-rate vs {anchor_name} (≤ {xmax:g} bpp) "
        f"| BD-rate vs {anchor_name} per image (mean) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for curve in measured:
        if anchor is None:
            bd_all = bd_cut = (None, None)
            per_image = None
        elif curve is anchor:
            bd_all = bd_cut = (0.0, 0.0)
            per_image = 0.0
        else:
            bd_all, bd_cut = _bd(anchor, curve, None), _bd(anchor, curve, xmax)
            per_image = _per_image_bd(anchor, curve)
        q = curve.get("quality") or []
        qs = f"{q[0]}–{q[-1]} ({len(q)})" if q else DASH
        rows.append(
            f"| {curve['name']} | {qs} | {_fmt(_mean_time(curve, 'encoding_time'), 3)} "
            f"| {_fmt(_mean_time(curve, 'decoding_time'), 3)} | {_pct(bd_all[0])} | {_fmt(bd_all[1])} dB "
            f"| {_pct(bd_cut[0])} | {_pct(per_image)} |"
        )
    return rows


def _pct(v: float | None) -> str:
    return DASH if v is None else f"{v:+.1f} %"


def summary_markdown(measured: list[dict], published: list[dict], anchor: str, xmax: float,
                     png: Path | None) -> str:
    meta = next((c.get("meta") for c in measured if isinstance(c.get("meta"), dict)), {}) or {}
    machine = meta.get("machine", {}) if isinstance(meta.get("machine"), dict) else {}
    lines = ["# Rate–distortion summary", ""]
    if meta:
        lines.append(
            f"Images: {meta.get('num_images', '?')} from `{meta.get('image_dir', '?')}`; "
            f"measured {meta.get('date', '?')} on {machine.get('platform', '?')} "
            f"({machine.get('cpu_count', '?')} CPUs, torch threads {machine.get('torch_threads', '?')}); "
            f"command `{meta.get('command', '?')}`."
        )
        lines.append("")
    lines += [
        "PSNR-RGB (dB, mean over images) at fixed rates, linearly interpolated in bpp between a curve's "
        f"points ({DASH} outside its range). Published curves are transcribed from their sources "
        "(see `benchmarks/published/kodak.json`), not measured here.",
        "",
        *psnr_table(measured + published),
        "",
    ]
    if measured:
        lines += [
            "Measured codecs: mean encode / decode wall-clock seconds per image over the whole sweep "
            f"(this machine), and Bjøntegaard deltas against `{anchor}` (PCHIP; negative BD-rate = "
            "fewer bits at equal PSNR), over all points and over the points up to "
            f"{xmax:g} bpp, of the mean curves; and the mean over images of each image's own BD-rate.",
            "",
            *measured_table(measured, anchor, xmax),
            "",
        ]
        for curve in measured:
            lines.append(f"- **{curve['name']}**: {curve.get('description', '')}")
        lines.append("")
    if png is not None:
        lines += [f"![rate-distortion curves]({png.name})", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry points


def report(results_dir: Path, published: Path | None = DEFAULT_PUBLISHED, xmax: float = 1.5,
           anchor: str = "jpeg", out_png: Path | None = None, quiet: bool = False) -> tuple[Path, Path]:
    """Plot ``results_dir`` (+ published curves) and write the summary; returns (png, summary.md)."""
    from neural_collages.imaging.io import atomic_write_bytes

    results_dir = Path(results_dir)
    measured = load_measured(results_dir)
    measured.sort(key=lambda c: (c["name"] != anchor, c["name"]))  # the anchor first
    pub = load_published(published)
    if not measured and not pub:
        raise PlotError(f"no results (*.json) in {results_dir}")
    png = Path(out_png) if out_png is not None else results_dir / "rd.png"
    meta = next((c.get("meta") for c in measured if isinstance(c.get("meta"), dict)), {}) or {}
    title = "Rate–distortion"
    if meta:
        title += f" on {meta.get('image_dir', '?')} ({meta.get('num_images', '?')} images)"
    plot(measured, pub, png, xmax=xmax, title=title)
    text = summary_markdown(measured, pub, anchor, xmax, png)
    summary = results_dir / "summary.md"
    atomic_write_bytes(summary, text.encode("utf-8"), force=True)
    if not quiet:
        print(text)
        print(f"wrote {_display(png)} and {_display(summary)}")
    return png, summary


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/plot_rd.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=DEFAULT_OUT,
                   help="folder of result JSON files (default: benchmarks/results/kodak)")
    p.add_argument("--published", type=Path, default=DEFAULT_PUBLISHED,
                   help="published curves (default: benchmarks/published/kodak.json)")
    p.add_argument("--no-published", action="store_true", help="plot measured curves only")
    p.add_argument("--xmax", type=float, default=1.5, help="x range upper bound in bpp (default 1.5)")
    p.add_argument("--anchor", default="jpeg", help="measured codec the BD deltas are taken against (default jpeg)")
    p.add_argument("--out", type=Path, help="PNG path (default: RESULTS/rd.png)")
    args = p.parse_args(argv)
    if not (args.xmax > 0):
        print(f"plot_rd.py: error: --xmax must be positive, got {args.xmax}", file=sys.stderr)
        return 2
    try:
        report(args.results, None if args.no_published else args.published, args.xmax, args.anchor, args.out)
    except PlotError as exc:
        print(f"plot_rd.py: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # e.g. an unwritable output path
        print(f"plot_rd.py: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
