"""gc --remote: delete remote objects that no remote ref reaches, under the remote's lock.

Reachable from a ref: its manifest, every object that manifest references, and the
manifests of its lineage (as locally: a child keeps its parents' manifests readable, not
their weights). Objects younger than the grace period are kept whatever they are, so the
blobs of a push in flight (sent, its ref not yet written) survive. The lock is an object,
``locks/gc`` = {owner, host, pid, created, expires, token}, created with If-None-Match: *;
pushes refuse to start while a live one is there. A lock past its expiry is stale: it is
reported with its owner and age, and ``--break-lock`` replaces it (If-Match on its etag,
so of two breakers one wins).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import msgspec

from registry.remote.config import Remote
from registry.remote.errors import RemoteLockedError, RemoteRefError
from registry.remote.refs import decode_ref, who
from registry.report import NullReporter, Reporter
from store.codec import Record, decode, encode_canonical
from store.manifest import decode_manifest
from store.errors import ModelStoreError
from store.remote.errors import RefExistsError, RefMovedError

LOCK_KEY = "locks/gc"
LOCK_TTL_S = 3600.0


class Lock(Record):
    owner: str
    host: str
    pid: int
    created: float  # seconds since the epoch
    expires: float
    token: str


@dataclass
class LockInfo:
    lock: Lock | None  # None: unreadable
    etag: str | None
    age_s: float
    expired: bool


def read_lock(remote: Remote) -> LockInfo | None:
    got = remote.store.backend.get(LOCK_KEY, 4096)
    if got is None:
        return None
    now = time.time()
    try:
        lock = decode(got[0], Lock)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return LockInfo(None, got[1], 0.0, True)  # garbage: as good as stale
    return LockInfo(lock, got[1], now - lock.created, now >= lock.expires)


def _locked_error(remote: Remote, info: LockInfo) -> RemoteLockedError:
    lock = info.lock
    return RemoteLockedError(remote.name, lock.owner if lock else "(unreadable lock)",
                             lock.host if lock else "?", info.age_s, info.expired)


def check_unlocked(remote: Remote) -> None:
    """Refuse to start a push while a live gc lock is held (a stale one does not block)."""
    info = read_lock(remote)
    if info is not None and not info.expired:
        raise _locked_error(remote, info)


def acquire_lock(remote: Remote, *, break_stale: bool, ttl_s: float = LOCK_TTL_S,
                 reporter: Reporter | None = None) -> Lock:
    now = time.time()
    lock = Lock(owner=who(), host=socket.gethostname(), pid=os.getpid(), created=now, expires=now + ttl_s,
                token=secrets.token_hex(8))
    data = encode_canonical(lock)
    try:
        remote.store.backend.create(LOCK_KEY, data)
        return lock
    except RefExistsError:
        pass
    info = read_lock(remote)
    if info is None:  # released meanwhile: try once more
        remote.store.backend.create(LOCK_KEY, data)
        return lock
    if not info.expired or not break_stale:
        raise _locked_error(remote, info)
    try:
        remote.store.backend.replace(LOCK_KEY, data, info.etag or "")
    except RefMovedError:
        raise _locked_error(remote, read_lock(remote) or info) from None
    if reporter is not None:
        old = info.lock
        reporter.warning(f"broke the stale gc lock of {old.owner if old else '(unreadable)'} "
                         f"(taken {int(info.age_s)}s ago)")
    return lock


def release_lock(remote: Remote, lock: Lock) -> None:
    info = read_lock(remote)
    if info is not None and info.lock is not None and info.lock.token == lock.token:
        remote.store.backend.delete(LOCK_KEY)


@dataclass
class RemoteGcResult:
    remote: str
    refs: int = 0
    kept: int = 0
    kept_young: int = 0
    deleted: list[tuple[str, int]] = field(default_factory=list)  # (digest, size)
    dry_run: bool = False

    @property
    def bytes_freed(self) -> int:
        return sum(size for _, size in self.deleted)


def remote_reachable(remote: Remote) -> tuple[set[str], int]:
    """Every object some ref reaches, and the number of refs; an unusable ref stops gc."""
    store = remote.store
    keep: set[str] = set()
    names = store.ref_names()
    for name in names:
        got = store.read_ref(name)
        if got is None:
            continue  # deleted meanwhile
        ref = decode_ref(remote.name, name, got[0])
        queue, first = [ref.manifest], True
        while queue:
            digest = queue.pop()
            if digest in keep and not first:
                continue
            keep.add(digest)
            try:
                manifest = decode_manifest(digest, store.get_verified(digest))
            except ModelStoreError as e:
                raise RemoteRefError(remote.name, name, f"its lineage manifest {digest[:12]} is unusable ({e}); "
                                     "gc deletes nothing while a ref cannot be followed") from None
            if first:
                keep |= manifest.object_digests()
                first = False
            queue.extend(p for p in manifest.parents if p not in keep)
    return keep, len(names)


def remote_gc(remote: Remote, *, grace_s: float, dry_run: bool = False, break_lock: bool = False,
              reporter: Reporter | None = None) -> RemoteGcResult:
    reporter = reporter or NullReporter()
    result = RemoteGcResult(remote.name, dry_run=dry_run)
    if not remote.store.check_format():
        return result  # an empty remote
    lock = None if dry_run else acquire_lock(remote, break_stale=break_lock, reporter=reporter)
    try:
        keep, result.refs = remote_reachable(remote)
        now = datetime.now(timezone.utc).timestamp()
        for info in remote.store.list_objects():
            digest = info.key[len("objects/"):].replace("/", "")
            if digest in keep:
                result.kept += 1
            elif now - info.mtime < grace_s:
                result.kept_young += 1
            else:
                if not dry_run:
                    remote.store.delete_object(digest)
                result.deleted.append((digest, info.size))
    finally:
        if lock is not None:
            release_lock(remote, lock)
    return result
