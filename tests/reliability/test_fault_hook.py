"""``MODELSTORE_FAULT=enospc@N`` fails the real operation as a full disk does: part of the
data written, then the kernel's plain ``OSError(ENOSPC)``, mapped by the same code as a real
one (``fsops._wrap``), so the cleanup of a half-written temp file runs at every step."""

from __future__ import annotations

import errno
import os

import pytest

from store.fs import faults, fsops
from store.errors import StoreIOError


def plan(monkeypatch, spec: str) -> None:
    monkeypatch.setattr(faults, "plan", faults.FaultPlan(spec, None))


def test_a_write_is_cut_short_then_fails_as_the_kernel_does(tmp_path, monkeypatch):
    fd, path = fsops.create_temp(tmp_path, "obj")
    plan(monkeypatch, "enospc@1")
    try:
        with pytest.raises(StoreIOError) as raised:
            fsops.write_all(fd, b"x" * 1000, path)
    finally:
        os.close(fd)
    assert raised.value.errno == errno.ENOSPC and str(path) in str(raised.value)
    # the error came from inside the write, as a plain OSError (what os.write raises)
    cause = raised.value.__cause__
    assert type(cause) is OSError and cause.errno == errno.ENOSPC
    assert path.read_bytes() == b"x" * 500  # half the data reached the file


def test_a_kernel_copy_is_cut_short_too(tmp_path, monkeypatch):
    source = tmp_path / "src"
    source.write_bytes(bytes(range(256)) * 4)
    fd, path = fsops.create_temp(tmp_path, "obj")
    src = os.open(source, os.O_RDONLY)
    plan(monkeypatch, "enospc@1")
    try:
        with pytest.raises(StoreIOError) as raised:
            fsops.copy_range(src, fd, 0, 1024, path)
    finally:
        os.close(src)
        os.close(fd)
    assert type(raised.value.__cause__) is OSError
    assert path.read_bytes() == source.read_bytes()[:512]


def test_write_temp_removes_its_half_written_file(tmp_path, monkeypatch):
    plan(monkeypatch, "enospc@2")  # 1: create the temp file, 2: write into it
    with pytest.raises(StoreIOError):
        fsops.write_temp(tmp_path, "registry.json", b"{}" * 100)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("op", ["mkdir", "rename", "fsync", "link", "symlink"])
def test_other_steps_fail_in_place_of_their_syscall(tmp_path, monkeypatch, op):
    (tmp_path / "a").write_text("a")
    plan(monkeypatch, "enospc@1")
    act = {"mkdir": lambda: fsops.mkdirs(tmp_path / "d"),
           "rename": lambda: fsops.rename(tmp_path / "a", tmp_path / "b"),
           "fsync": lambda: fsops.fsync_dir(tmp_path),
           "link": lambda: fsops.hardlink(tmp_path / "a", tmp_path / "b"),
           "symlink": lambda: fsops.symlink("a", tmp_path / "b")}[op]
    with pytest.raises(StoreIOError) as raised:
        act()
    assert type(raised.value.__cause__) is OSError and raised.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # nothing done
