import os

import pytest

from neural_collages.errors import ImageError, OutputExistsError
from neural_collages.imaging.atomic import atomic_write_bytes


def test_atomic_write_bytes(tmp_path):
    path = tmp_path / "code.bin"
    atomic_write_bytes(path, b"abc")
    assert path.read_bytes() == b"abc"
    with pytest.raises(OutputExistsError):
        atomic_write_bytes(path, b"xyz")
    assert path.read_bytes() == b"abc"
    atomic_write_bytes(path, b"xyz", force=True)
    assert path.read_bytes() == b"xyz"
    with pytest.raises(ImageError, match="does not exist"):
        atomic_write_bytes(tmp_path / "nope" / "code.bin", b"abc")
    with pytest.raises(ImageError, match="directory"):
        atomic_write_bytes(tmp_path, b"abc", force=True)
    assert sorted(os.listdir(tmp_path)) == ["code.bin"]
