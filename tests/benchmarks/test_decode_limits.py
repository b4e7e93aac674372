"""The decompression bomb of issue 12, decoded by ``collage decompress``: bounded memory, a correct flat image."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from benchmarks.decode_limits import flat_bomb

#: The stated bound for a decode to the pixel limit through the CLI (docs/format.md): 1.5 GB.
BOUND_BYTES = 1.5e9

CHILD = r"""
import json, resource, sys
from neural_collages.apps.cli import main
rc = main(["decompress", sys.argv[1], sys.argv[2]])
print(json.dumps({"rc": rc, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


@pytest.mark.slow
def test_a_233_byte_file_declaring_2_to_the_26_pixels_decodes_within_the_memory_bound(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.clg"
    bomb.write_bytes(flat_bomb())
    assert bomb.stat().st_size < 300
    out = tmp_path / "bomb.png"
    run = subprocess.run([sys.executable, "-c", CHILD, str(bomb), str(out)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0
    assert result["peak"] < BOUND_BYTES, f"peak RSS {result['peak'] / 2**30:.2f} GiB"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # our own 2^26-pixel output, above Pillow's warning limit
    with Image.open(out) as png:
        assert png.size == (8192, 8192) and png.mode == "RGB"
        corner = np.asarray(png.crop((0, 0, 64, 64)))
    # every block flat at mean 0: one grey value everywhere
    assert corner.min() == corner.max()
