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


def test_permissions_follow_the_umask_like_any_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="O_TMPFILE is Linux-only")
def test_on_linux_the_bytes_go_to_an_unnamed_file_until_complete(tmp_path, monkeypatch):
    seen = []
    real_fsync = os.fsync

    def fsync(fd):
        seen.append(sorted(os.listdir(tmp_path)))  # the directory while the data is being made durable
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write_bytes(tmp_path / "new.bin", b"abc")
    atomic_write_bytes(tmp_path / "new.bin", b"abcd", force=True)
    assert seen[0] == [] and seen[1] == ["new.bin"]  # no named temporary while writing
    assert (tmp_path / "new.bin").read_bytes() == b"abcd" and os.listdir(tmp_path) == ["new.bin"]


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="O_TMPFILE is Linux-only")
def test_a_writer_killed_mid_write_leaves_no_file_behind(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    # The child blocks inside the write (in fsync, i.e. after every byte is written) until killed.
    child = (
        "import os, sys, time\n"
        "from neural_collages.imaging import atomic\n"
        "def fsync(fd):\n"
        "    print('writing', flush=True); time.sleep(60)\n"
        "os.fsync = fsync\n"
        "atomic.atomic_write_bytes(sys.argv[1], b'x' * 1_000_000)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child, str(tmp_path / "out.bin")], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.1)
    assert os.listdir(tmp_path) == []  # a named temporary would have stayed (the old behaviour)


def test_the_named_fallback_removes_stale_temporaries_of_its_own_naming_only(tmp_path, monkeypatch):
    import time

    from neural_collages.imaging import atomic

    monkeypatch.setattr(atomic, "_write_unnamed", lambda *args: False)
    stale, fresh, other = (tmp_path / ".out.bin.0123456789ab.tmp", tmp_path / ".out.bin.ba9876543210.tmp",
                           tmp_path / ".out.bin.notours.tmp")
    for f in (stale, fresh, other):
        f.write_bytes(b"old")
    old = time.time() - 2 * atomic.STALE_SECONDS
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    atomic_write_bytes(tmp_path / "out.bin", b"new")
    assert (tmp_path / "out.bin").read_bytes() == b"new"
    assert not stale.exists() and fresh.exists() and other.exists()
