"""Partial downloads kept in ``.modelstore/tmp/`` so that a killed import resumes.

A Hub file being downloaded lives in a sparse file, ``hubpart-KEY.part`` (ranges land there
by ``pwrite`` at their offset), beside a small record, ``hubpart-KEY.rec`` (a msgspec
``PartialRecord`` as JSON, replaced atomically by a rename): the repo, commit, path, the
expected size and sha256 (or git blob id), and the byte ranges already written. ``KEY`` is a
hash of the repo, path, expected hash and size, so a changed upstream file (another sha256)
never finds the partial of the old one; the record is checked field by field again on open.

The record only ever lists bytes that were ``pwrite``-n before it was written, so after a
SIGKILL (the page cache keeps what was written) it claims nothing that is not there. After a
power loss it could: the import re-hashes the whole file anyway, and a resumed file that
does not match is discarded and fetched again from scratch (``registry.hub.transfer``).

An import holds an exclusive ``flock`` on the ``.part`` file while it uses it; a second
import of the same file at the same time downloads into a private temp file instead.
Abandoned partials (an import never run again) are temp entries like any other: gc removes
them once older than its grace period (their mtime moves with every write while in use).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from pathlib import Path

import msgspec

from store.fs import fsops

PREFIX = "hubpart-"
RECORD_VERSION = 1


class PartialRecord(msgspec.Struct, forbid_unknown_fields=False):
    version: int
    repo_id: str
    commit: str
    path: str
    size: int
    sha256: str | None
    git_oid: str | None
    received: list[tuple[int, int]]  # [start, end) byte ranges written, merged and sorted
    updated: float = 0.0


class Intervals:
    """Sorted, merged ``[start, end)`` byte ranges. Not thread-safe: the caller locks."""

    def __init__(self, spans: list[tuple[int, int]] | None = None):
        self.spans: list[list[int]] = []
        for a, b in spans or []:
            self.add(a, b)

    def add(self, a: int, b: int) -> int:
        """Add ``[a, b)``; returns how many bytes were not covered before."""
        if b <= a:
            return 0
        new = b - a
        merged: list[list[int]] = []
        placed = False
        for s, e in self.spans:
            if e < a or s > b:  # disjoint, not touching
                if s > b and not placed:
                    merged.append([a, b])
                    placed = True
                merged.append([s, e])
                continue
            new -= max(0, min(e, b) - max(s, a))
            a, b = min(s, a), max(e, b)
        if not placed:
            merged.append([a, b])
        merged.sort()
        self.spans = merged
        return new

    def covered_from(self, pos: int) -> int:
        """The end of the run of covered bytes starting at ``pos`` (``pos`` if none)."""
        for s, e in self.spans:
            if s <= pos < e:
                return e
        return pos

    def missing(self, size: int) -> list[tuple[int, int]]:
        gaps, pos = [], 0
        for s, e in self.spans:
            if s > pos:
                gaps.append((pos, min(s, size)))
            pos = max(pos, e)
        if pos < size:
            gaps.append((pos, size))
        return gaps

    def total(self) -> int:
        return sum(e - s for s, e in self.spans)

    def as_list(self) -> list[tuple[int, int]]:
        return [(s, e) for s, e in self.spans]


def partial_key(repo_id: str, path: str, size: int, sha256: str | None, git_oid: str | None) -> str:
    text = "\0".join((repo_id, path, str(size), sha256 or "", git_oid or ""))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Partial:
    """One file's partial download: its sparse data file, its record, what is received."""

    def __init__(self, fd: int, data: Path, record_path: Path | None, record: PartialRecord, tmp_dir: Path):
        self.fd, self.data, self.record_path, self.record, self.tmp_dir = fd, data, record_path, record, tmp_dir
        self.received = Intervals(record.received)
        self.resumed = self.received.total()  # bytes found from an earlier run
        self.save_lock = threading.Lock()

    @property
    def keeps(self) -> bool:
        """Whether this partial outlives the process for a later run (not a private temp)."""
        return self.record_path is not None

    @classmethod
    def open(cls, tmp_dir: Path, repo_id: str, commit: str, path: str, size: int, sha256: str | None,
             git_oid: str | None, *, resumable: bool = True) -> Partial:
        """The kept partial of this file (resumed if its record matches), else a new one."""
        fresh = PartialRecord(RECORD_VERSION, repo_id, commit, path, size, sha256, git_oid, [])
        fsops.mkdirs(tmp_dir)
        if resumable:
            key = partial_key(repo_id, path, size, sha256, git_oid)
            data, rec = tmp_dir / f"{PREFIX}{key}.part", tmp_dir / f"{PREFIX}{key}.rec"
            fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # another import of this file is running: no resume for this one
            else:
                record = _read_record(rec, fresh)
                written = os.fstat(fd).st_size
                if record is None or written > size or max((b for _, b in record.received), default=0) > written:
                    record = fresh
                    if written:
                        # Only a stale file that holds bytes is truncated: ext4 flushes a file
                        # truncated to 0 bytes when it is closed (auto_da_alloc), so truncating
                        # every new (empty) partial wrote each whole download to the disk just
                        # before its partial was deleted. A stale one still pays that, rarely.
                        os.ftruncate(fd, 0)
                else:
                    record.commit = commit
                return cls(fd, data, rec, record, tmp_dir)
        fd, data = fsops.create_temp(tmp_dir, "hubpart")
        return cls(fd, data, None, fresh, tmp_dir)

    def write(self, data: bytes | memoryview, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view[:fsops.WRITE_CHUNK], offset)
            view, offset = view[n:], offset + n

    def save(self, spans: list[tuple[int, int]]) -> None:
        """Write the record listing ``spans`` (bytes already written), atomically."""
        if self.record_path is None:
            return
        with self.save_lock:
            self.record.received = spans
            self.record.updated = time.time()
            tmp = self.record_path.with_name(self.record_path.name + f".{os.getpid()}.new")
            with open(tmp, "wb") as f:
                f.write(msgspec.json.encode(self.record))
            os.replace(tmp, self.record_path)

    def close(self) -> None:
        """Keep the partial (and its record) for the next run; a private temp is removed."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.record_path is None:
            fsops.unlink(self.data)

    def discard(self) -> None:
        """Remove the partial and its record: the file is done, or its bytes are bad."""
        if self.record_path is not None:
            fsops.unlink(self.record_path)
        fsops.unlink(self.data)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _read_record(rec: Path, expected: PartialRecord) -> PartialRecord | None:
    try:
        record = msgspec.json.decode(rec.read_bytes(), type=PartialRecord)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    same = (record.version, record.repo_id, record.path, record.size, record.sha256, record.git_oid) == (
        expected.version, expected.repo_id, expected.path, expected.size, expected.sha256, expected.git_oid)
    if not same or any(not (0 <= a < b <= record.size) for a, b in record.received):
        return None
    return record


def kept_partials(tmp_dir: Path) -> list[Path]:
    """The kept partial downloads (data and record files) in ``tmp_dir``."""
    if not tmp_dir.is_dir():
        return []
    return sorted(p for p in tmp_dir.iterdir() if p.name.startswith(PREFIX) and p.suffix in (".part", ".rec"))
