"""``collage corpus``: build a training corpus from the images installed Debian and PyPI packages ship."""

from __future__ import annotations

import time
from pathlib import Path

#: Corpus kinds (``training.corpus.KINDS``; written here so ``--help`` needs no torch).
KINDS = ("photo", "aerial-train", "aerial-test")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "corpus",
        help="build a training corpus from installed packages",
        description="Build a training corpus (PNG files + manifest.json) from the photos and aerial images "
        "that Debian and PyPI packages install (see docs/training.md). Nothing is downloaded.",
    )
    p.add_argument("kind", choices=KINDS, help="which corpus to build")
    p.add_argument("out", type=Path, help="output directory (PNG files + manifest.json)")
    p.add_argument("--max-side", type=int, default=None, metavar="N",
                   help="shrink images so the longer side is at most N pixels "
                        "(default: 1024 for photo, native resolution for aerial)")
    p.add_argument("--force", action="store_true", help="rebuild into an existing non-empty directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_corpus)


def run_corpus(args) -> int:
    from ...training.corpus import build_corpus

    start = time.perf_counter()
    max_side = "default" if args.max_side is None else args.max_side
    manifest = build_corpus(args.kind, args.out, max_side=max_side, force=args.force, progress=not args.quiet)
    elapsed = time.perf_counter() - start
    n = manifest["num_images"]
    print(f"{args.kind}: {n} image{'s' if n != 1 else ''}, {manifest['megapixels']:.1f} megapixels "
          f"written to {args.out} in {elapsed:.1f} s")
    for item in manifest["skipped"]:
        print(f"  skipped {item['source']}: {item['reason']}")
    return 0
