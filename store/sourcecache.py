"""What the store remembers about the source files it has split, so unchanged ones are not re-read.

Re-importing a folder (under a second name, after an interrupted import, after editing its
config.json) would read and hash every weight byte again only to find every blob already
stored. Like git's index and DVC's state database, the store keeps, per source folder, each
file's identity as ``stat`` gives it (device, inode, size, mtime and ctime in ns) and the
blobs the file yielded. A file whose identity is unchanged yields the same blobs, so they
are only checked present with the right size, as every re-import checks them, not re-read.

Why an unchanged identity is trusted:
- any write to a file moves its mtime and ctime, and ctime cannot be set by any user call;
  replacing the file changes its inode;
- a file modified less than ``RACY_NS`` before it was hashed is not trusted: a second write
  within the same timestamp tick would leave the identity as it was (git's "racy clean"
  problem; 2 s covers filesystems with coarse timestamps). It is remembered all the same,
  with the time it was hashed, so what an import writes does not depend on the clock, and
  is trusted once a later import finds it unchanged and no longer recent;
- a file whose identity moved while it was being hashed is not remembered;
- the record is only a hint: an unreadable, foreign or stale one is ignored (the file is
  hashed as if it were not there), and a blob it names that is missing or of the wrong size
  sends the whole file back to hashing. ``validate-registry`` never consults it.

Records live in ``.modelstore/sources/<digest of the folder path>.json``; writing one is an
ordinary atomic write, done before the import commits. ``gc`` drops the records of folders
that are gone, and records it cannot read (``stale_records``).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from store.fs import fsops
from store.codec import Record, decode, encode_canonical
from store.digest import digest_bytes
from store.layout import Layout
from store.objects import ObjectStore, PutResult, StoredTensor
from store.tensors.tensorfile import TensorSpec

RECORD_VERSION = 1
# A file modified this recently when its hashing started is not trusted (see the module doc).
RACY_NS = 2_000_000_000
# A record bigger than this is not read (a folder of a few hundred thousand tensors).
MAX_RECORD_BYTES = 256 << 20


class Identity(Record, array_like=True):
    """A file as ``stat`` saw it: unchanged identity, unchanged bytes."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class RememberedTensor(Record, array_like=True):
    name: str
    dtype: str
    shape: list[int]
    start: int
    end: int
    digest: str
    blob_size: int


class RememberedFile(Record):
    identity: Identity
    hashed_ns: int  # when its hashing started (wall clock)
    digest: str | None = None  # a file stored verbatim
    size: int = 0
    tensors: list[RememberedTensor] | None = None  # a safetensors file split into tensor blobs


class SourceRecord(Record):
    version: int
    folder: str
    files: dict[str, RememberedFile] = {}


def _racy(entry: RememberedFile) -> bool:
    """Modified so shortly before it was hashed that a same-tick write could hide (see above)."""
    return entry.identity.mtime_ns > entry.hashed_ns - RACY_NS


def stale_records(layout: Layout) -> list[tuple[Path, str | None]]:
    """Records no import can use any more, as (path, the folder it remembered): their folder
    is gone, or (folder None) they cannot be read."""
    if not layout.sources.is_dir() or os.path.islink(layout.sources):
        return []
    stale = []
    for path in sorted(layout.sources.iterdir()):
        if not path.name.endswith(".json"):
            continue
        record = _read_record(path)
        if record is None or not folder_exists(record.folder):
            stale.append((path, None if record is None else record.folder))
    return stale


def folder_exists(folder: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(folder).st_mode)
    except OSError:
        return False


def _read_record(path: Path) -> SourceRecord | None:
    """The record at ``path``; None if it is absent, a link, not a file, too big or malformed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_RECORD_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            record = decode(f.read(), SourceRecord)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    finally:
        os.close(fd)
    return record if record.version == RECORD_VERSION else None


class SourceCache:
    """The remembered files of one source folder, for one import."""

    def __init__(self, layout: Layout, objects: ObjectStore, folder: Path):
        self.layout, self.objects, self.folder = layout, objects, str(folder)
        self.path = layout.source_record_path(digest_bytes(self.folder.encode("utf-8", "surrogateescape")))
        self.files = self._read()
        self.changed = False
        self.hits: list[str] = []  # relative paths whose blobs were found without reading them
        self.seen: set[str] = set()  # relative paths this import stored

    def put_tensors(self, relpath: str, path: Path,
                    on_bytes: Callable[[int], None] | None = None) -> list[StoredTensor]:
        """``ObjectStore.put_tensors(path, on_bytes)``, skipped when the file is remembered unchanged."""
        self.seen.add(relpath)
        before = os.stat(path)
        known = self._trusted(relpath, before)
        if known is not None and known.tensors is not None:
            if self.objects.holds_all([(t.digest, t.blob_size) for t in known.tensors]):
                self.hits.append(relpath)
                return [StoredTensor(TensorSpec(t.name, t.dtype, tuple(t.shape), t.start, t.end),
                                     PutResult(t.digest, t.blob_size, written=False))
                        for t in known.tensors]
        started = time.time_ns()
        stored = self.objects.put_tensors(path, on_bytes=on_bytes)
        tensors = [RememberedTensor(s.spec.name, s.spec.dtype, list(s.spec.shape), s.spec.start, s.spec.end,
                                    s.put.digest, s.put.size) for s in stored]
        self._remember(relpath, path, RememberedFile(Identity.of(before), started, tensors=tensors))
        return stored

    def put_file(self, relpath: str, path: Path) -> PutResult:
        """``ObjectStore.put_file(path)``, skipped when the file is remembered unchanged."""
        self.seen.add(relpath)
        before = os.stat(path)
        known = self._trusted(relpath, before)
        if known is not None and known.digest is not None and self.objects.holds(known.digest, known.size):
            self.hits.append(relpath)
            return PutResult(known.digest, known.size, written=False)
        started = time.time_ns()
        put = self.objects.put_file(path)
        self._remember(relpath, path, RememberedFile(Identity.of(before), started, digest=put.digest,
                                                     size=put.size))
        return put

    def save(self) -> None:
        """Write the record if this import learnt anything (an atomic write, fsync'd); files
        the folder no longer has (this import did not store them) are forgotten."""
        for relpath in set(self.files) - self.seen:
            del self.files[relpath]
            self.changed = True
        if not self.changed:
            return
        record = SourceRecord(version=RECORD_VERSION, folder=self.folder, files=self.files)
        fsops.mkdirs(self.layout.sources)
        fsops.atomic_write(self.path, encode_canonical(record), self.layout.tmp)
        self.changed = False

    def _trusted(self, relpath: str, now: os.stat_result) -> RememberedFile | None:
        """The remembered file, if ``now`` is its identity and it was not recent when hashed."""
        known = self.files.get(relpath)
        if known is None or known.identity != Identity.of(now) or _racy(known):
            return None
        return known

    def _remember(self, relpath: str, path: Path, entry: RememberedFile) -> None:
        """Keep ``entry`` unless the file moved while it was hashed; rewrite the record only if
        this changes what it says (new digests or identity, or trust it lacked)."""
        if Identity.of(os.stat(path)) != entry.identity:
            if self.files.pop(relpath, None) is not None:
                self.changed = True
            return
        known = self.files.get(relpath)
        same = (known is not None and known.identity == entry.identity and known.digest == entry.digest
                and known.size == entry.size and known.tensors == entry.tensors)
        if not same or (_racy(known) and not _racy(entry)):  # type: ignore[arg-type]
            self.files[relpath] = entry
            self.changed = True

    def _read(self) -> dict[str, RememberedFile]:
        """The folder's remembered files; nothing if the record is absent, odd or unreadable."""
        if os.path.islink(self.layout.sources):
            return {}
        record = _read_record(self.path)
        if record is None or record.folder != self.folder:
            return {}
        return record.files
