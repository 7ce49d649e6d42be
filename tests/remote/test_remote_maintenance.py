"""validate-registry --fix restoring from a remote, and gc --remote (reachability, grace, lock)."""

from __future__ import annotations

import os
import time

import pytest

from registry.check.validate import validate
from registry.remote.config import open_remote
from registry.remote.errors import RemoteLockedError
from registry.remote.gc import LOCK_KEY, Lock, remote_gc
from registry.remote.push import push
from store.codec import encode_canonical
from store.remote.objects import object_key
from tests.remote.helpers import run_cli


def test_fix_restores_a_corrupt_blob_from_a_file_remote(make_store, tmp_path, tiny_model):
    ws = make_store("a", {"tiny": 1}, remote=(f"file://{tmp_path / 'remote'}", None))
    push(ws, open_remote(ws, None), "tiny")
    entry = ws.read_registry().models["tiny"]
    digest = sorted(ws.manifest(entry.manifest).tensors.values(), key=lambda t: t.nbytes)[-1].digest
    # the local source is gone, so only the remote can restore it
    import shutil
    shutil.rmtree(tmp_path / "src-a-tiny")
    path = ws.objects.path(digest)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert not validate(ws).ok
    out = run_cli(ws.root, "validate-registry", "--fix", "--yes", check=False)
    assert out.returncode == 0, out.stderr
    assert f"restored object {digest[:12]} from remote origin (file://" in out.stdout
    assert validate(ws).ok


def _age(remote, digest, seconds):
    path = remote.store.backend.root / object_key(digest)
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_remote_gc_keeps_reachable_and_young_objects(make_store, tmp_path):
    ws = make_store("a", {"keep": 1, "drop": 2}, remote=(f"file://{tmp_path / 'remote'}", None))
    remote = open_remote(ws, None)
    push(ws, remote, "keep")
    push(ws, remote, "drop")
    kept = ws.manifest(ws.read_registry().models["keep"].manifest)
    dropped_digest = ws.read_registry().models["drop"].manifest
    dropped = ws.manifest(dropped_digest)
    remote.store.delete_ref("drop")
    only_dropped = (dropped.object_digests() | {dropped_digest}) - kept.object_digests()
    young = sorted(only_dropped)[0]
    for info in list(remote.store.list_objects()):
        _age(remote, info.key[8:].replace("/", ""), 7200)
    _age(remote, young, 10)

    dry = remote_gc(remote, grace_s=3600, dry_run=True)
    assert {d for d, _ in dry.deleted} == only_dropped - {young}
    assert all(remote.store.holds(d, s) for d, s in dry.deleted)
    result = remote_gc(remote, grace_s=3600)
    assert {d for d, _ in result.deleted} == only_dropped - {young}
    assert result.kept_young == 1 and remote.store.holds(young, os.stat(
        remote.store.backend.root / object_key(young)).st_size)
    for digest, size in kept.expected_sizes().items():
        assert remote.store.holds(digest, size)
    # what is left still pulls
    b = make_store("b", remote=(f"file://{tmp_path / 'remote'}", None))
    from registry.remote.pull import pull
    pull(b, open_remote(b, None), "keep")
    assert validate(b).ok


def test_remote_gc_honours_the_lock(make_store, tmp_path):
    ws = make_store("a", {"m": 1}, remote=(f"file://{tmp_path / 'remote'}", None))
    remote = open_remote(ws, None)
    push(ws, remote, "m")
    now = time.time()
    live = Lock(owner="ann@box", host="box", pid=1, created=now - 60, expires=now + 3600, token="t1")
    remote.store.backend.create(LOCK_KEY, encode_canonical(live))
    with pytest.raises(RemoteLockedError, match="ann@box"):
        remote_gc(remote, grace_s=0)
    with pytest.raises(RemoteLockedError):
        remote_gc(remote, grace_s=0, break_lock=True)  # a live lock is never broken
    with pytest.raises(RemoteLockedError):
        push(ws, remote, "m")  # pushes wait for gc
    stale = Lock(owner="bob@old", host="old", pid=1, created=now - 7200, expires=now - 3600, token="t2")
    remote.store.backend.delete(LOCK_KEY)
    remote.store.backend.create(LOCK_KEY, encode_canonical(stale))
    out = run_cli(ws.root, "gc", "--remote", "origin", check=False)
    assert out.returncode == 1 and "bob@old" in out.stderr and "2h00m ago" in out.stderr and "--break-lock" in out.stderr
    out = run_cli(ws.root, "gc", "--remote", "origin", "--break-lock", "--grace", "0")
    assert "broke the stale gc lock of bob@old" in out.stderr
    assert remote.store.backend.get(LOCK_KEY, 4096) is None  # released after the run
    push(ws, remote, "m")
