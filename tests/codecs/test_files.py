"""``.clg`` files on disk (``codecs/files.py``): atomic writes, size-checked reads, errors that name the path."""

import os
import random
import re

import pytest

from neural_collages.codecs import files
from neural_collages.codecs.files import read_container, write_container
from neural_collages.coding import container
from neural_collages.coding.container import MAX_FILE_BYTES, ContainerHeader, pack
from neural_collages.errors import ConfigurationError, FormatError, OutputExistsError


def payload_bytes(n, seed=1):
    return random.Random(seed).randbytes(n)


@pytest.fixture
def header():
    return ContainerHeader(codec="pifs", width=64, height=48, channels=3, params={"quality": 4})


@pytest.fixture
def valid(header):
    return pack(header, bytes(range(256)) + bytes(44))


def test_write_and_read(tmp_path, header):
    path = tmp_path / "image.clg"
    payload = payload_bytes(500)
    write_container(path, header, payload)
    assert read_container(path) == (header, payload)
    assert read_container(str(path)) == (header, payload)
    assert path.read_bytes() == pack(header, payload)


def test_write_refuses_to_overwrite(tmp_path, header):
    path = tmp_path / "image.clg"
    write_container(path, header, b"first")
    with pytest.raises(OutputExistsError):
        write_container(path, header, b"second")
    assert read_container(path)[1] == b"first"
    write_container(path, header, b"second", force=True)
    assert read_container(path)[1] == b"second"


def test_write_validates_before_touching_disk(tmp_path):
    path = tmp_path / "bad.clg"
    with pytest.raises(ConfigurationError):
        write_container(path, ContainerHeader("gif", 4, 4, 3, {}), b"")
    assert not path.exists()


def test_read_missing_and_directory(tmp_path):
    missing = tmp_path / "nope.clg"
    with pytest.raises(FormatError, match=re.escape(f"{missing}: no such file")):
        read_container(missing)
    with pytest.raises(FormatError, match=re.escape(f"{tmp_path}: is a directory")):
        read_container(tmp_path)


def test_read_error_names_the_path(tmp_path, valid):
    path = tmp_path / "broken.clg"
    path.write_bytes(valid[:-2])
    with pytest.raises(FormatError, match=re.escape(f"{path}: truncated")):
        read_container(path)
    path.write_bytes(b"")
    with pytest.raises(FormatError, match=re.escape(f"{path}: not a .clg file")):
        read_container(path)


def test_read_refuses_huge_file_without_reading_it(tmp_path, monkeypatch):
    path = tmp_path / "huge.clg"
    with open(path, "wb") as f:
        f.write(b"NCLG\x01")
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk space used

    def no_open(*args, **kwargs):
        raise AssertionError("read_container opened a file it should have refused from its size")

    monkeypatch.setattr(files, "open", no_open, raising=False)
    with pytest.raises(FormatError, match=re.escape(f"{path}: {MAX_FILE_BYTES + 1} bytes is larger than")):
        read_container(path)


def test_read_bounds_a_file_that_grows_after_stat(tmp_path, monkeypatch, valid, header):
    path = tmp_path / "growing.clg"
    path.write_bytes(valid)
    real_stat = os.stat

    def stale_stat(p, *args, **kwargs):
        result = real_stat(p, *args, **kwargs)
        if os.fspath(p) == os.fspath(path):
            fields = list(result)
            fields[6] = 10  # st_size as it was "before the file grew"
            return os.stat_result(fields)
        return result

    monkeypatch.setattr(files.os, "stat", stale_stat)
    assert read_container(path)[0] == header  # growth within the limit: read in full
    monkeypatch.setattr(container, "MAX_FILE_BYTES", len(valid) - 1)
    with pytest.raises(FormatError, match="larger than the largest possible"):
        read_container(path)
