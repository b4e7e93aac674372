"""Small helpers shared by the benchmark scripts: paths and JSON formatting."""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

#: The repository root (the folder holding ``src/`` and ``benchmarks/``).
ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "kodak"
DEFAULT_OUT = BENCH / "results" / "kodak"
DEFAULT_PUBLISHED = BENCH / "published" / "kodak.json"


def setup_paths() -> None:
    """Make ``neural_collages`` (from ``src/``) and ``benchmarks.*`` importable from a checkout.

    Running ``python benchmarks/rd.py`` puts ``benchmarks/`` itself first on ``sys.path``, where
    ``codecs.py`` would shadow the standard-library ``codecs`` module for any later import; that
    entry is removed (the scripts import each other as ``benchmarks.<name>``).
    """
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
    for p in (str(ROOT / "src"), str(ROOT)):
        if p not in sys.path:
            sys.path.insert(0, p)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(obj):
    """Replace NaN/inf by ``None`` (JSON has no such numbers)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return _finite_or_none(obj)


def dumps(obj, indent: int = 2) -> str:
    """JSON text with 2-space indentation, lists of scalars kept on one line, ending in a newline."""

    def render(value, level: int) -> str:
        pad = " " * (indent * (level + 1))
        end = " " * (indent * level)
        if isinstance(value, dict):
            if not value:
                return "{}"
            items = [f"{pad}{json.dumps(str(k))}: {render(v, level + 1)}" for k, v in value.items()]
            return "{\n" + ",\n".join(items) + "\n" + end + "}"
        if isinstance(value, list):
            if all(not isinstance(v, (dict, list)) for v in value):
                return "[" + ", ".join(json.dumps(v, allow_nan=False) for v in value) + "]"
            items = [pad + render(v, level + 1) for v in value]
            return "[\n" + ",\n".join(items) + "\n" + end + "]"
        return json.dumps(value, allow_nan=False)

    return render(_clean(obj), 0) + "\n"


def timed(fn, repeats: int):
    """``(result, median seconds)`` of ``fn()`` over ``repeats`` calls (the last call's result)."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times)


def png_images(folder: Path, limit: int | None = None) -> list[Path]:
    """The first ``limit`` PNG files of ``folder`` by name; with none, a message and exit status 2."""
    paths = sorted(Path(folder).glob("*.png"))[:limit]
    if not paths:
        print(f"no PNG images in {folder}", file=sys.stderr)
        raise SystemExit(2)
    return paths
