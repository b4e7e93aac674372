"""Rewrite the golden files: one ``.clg`` per codec and quality for the bundled sample image, and
the SHA-256 digests of its bytes and of its decoded 8-bit pixels at scales 1 and 2.

Run this only for a deliberate, versioned format change (bump the payload version and say so in
the commit): ``tests/codecs/test_golden.py`` exists to catch every *silent* drift of the bytes a
codec writes or the pixels a decoder returns, across versions, machines and thread counts.

    python tests/codecs/golden/regenerate.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from neural_collages import codecs
from neural_collages.assets import sample_image_path
from neural_collages.imaging.io import load_image, to_uint8

HERE = Path(__file__).resolve().parent
SCALES = (1, 2)


def golden_cases() -> list[tuple[str, str | None, int]]:
    """(codec, model, quality) for every quality every shipped codec and model offers."""
    cases = [("pifs", None, q) for q in codecs.quality_levels("pifs")]
    for model in ("photo", "aerial"):
        cases += [("neural", model, q) for q in codecs.quality_levels("neural", model)]
    return cases


def case_name(codec: str, model: str | None, quality: int) -> str:
    return f"{codec}-q{quality}" if model is None else f"{codec}-{model}-q{quality}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pixel_digest(data: bytes, scale: int) -> str:
    return sha256(to_uint8(codecs.decompress(data, scale)).numpy().tobytes())


def main() -> None:
    image = load_image(sample_image_path())
    digests = {}
    for codec, model, quality in golden_cases():
        name = case_name(codec, model, quality)
        data = codecs.compress(image, codec, quality, model=model)
        (HERE / f"{name}.clg").write_bytes(data)
        digests[name] = {"file": sha256(data), **{f"pixels_x{s}": pixel_digest(data, s) for s in SCALES}}
        print(name, len(data), "bytes")
    (HERE / "digests.json").write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
