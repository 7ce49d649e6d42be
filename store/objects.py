"""Content-addressed objects: write once, verify by digest, share forever.

Every write goes: unique temp file in ``.modelstore/tmp/`` -> bytes -> fsync -> re-hash the
temp file (the name is always the digest of what is on disk, even if the source changed
under us) -> mode 0444 -> rename to ``objects/ab/cdef...`` -> fsync the directory. Writers
that already hashed what they wrote skip the re-hash: tensors split from a local file are
hashed from the temp file itself once written (``store.tensors.tensorsplit``), tensors from memory
or a download are hashed in the memory they are written from. Putting an object that
already exists with the right size writes nothing; it only refreshes the object's mtime so
that a concurrent ``gc`` (which spares young objects) cannot collect a blob an import is
about to reference.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from store.fs import fsops
from store.digest import digest_bytes, digest_fd
from store.errors import REMOVED_IN_FLIGHT_HINT, CorruptObjectError, ObjectMissingError, SourceChangedError
from store.layout import OBJECT_MODE, Layout
from store.tensors.tensorfile import TensorSpec, canonical_header, read_header
from store.tensors.tensorsplit import Copied, hashed_copies, map_source


@dataclass(frozen=True)
class PutResult:
    digest: str
    size: int
    written: bool  # False when the object was already in the store


@dataclass(frozen=True)
class StoredTensor:
    spec: TensorSpec  # where the tensor sat in its source file
    put: PutResult


class ObjectStore:
    def __init__(self, layout: Layout):
        self.layout = layout

    # --- reading ---------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        return self.layout.object_path(digest)

    def size(self, digest: str) -> int | None:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            return None

    def exists(self, digest: str) -> bool:
        return self.size(digest) is not None

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ObjectMissingError(digest, path) from None
        if verify:
            actual = digest_bytes(data)
            if actual != digest:
                raise CorruptObjectError(digest, path, actual)
        return data

    def rehash(self, digest: str) -> str:
        """Digest of the object's bytes as they are on disk now."""
        path = self.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ObjectMissingError(digest, path) from None
        try:
            return digest_fd(fd)
        finally:
            os.close(fd)

    # --- writing ---------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> PutResult:
        digest = digest_bytes(data)
        if self._have(digest, len(data)):
            return PutResult(digest, len(data), written=False)
        with Batch(self) as batch:
            fd, tmp = self.layout.new_temp("obj")
            with _closing_on_error(fd, tmp):
                fsops.write_all(fd, data, tmp)
            return batch.add(fd, tmp, digest, None)

    def put_file(self, source: Path) -> PutResult:
        """Store a file verbatim (config.json, tokenizer.json, ...)."""
        with open(source, "rb") as f:
            src = f.fileno()
            size = os.fstat(src).st_size
            digest = digest_fd(src)
            if self._have(digest, size):
                return PutResult(digest, size, written=False)
            with Batch(self) as batch:
                fd, tmp = self.layout.new_temp("obj")
                with _closing_on_error(fd, tmp):
                    fsops.copy_range(src, fd, 0, size, tmp)
                return batch.add(fd, tmp, digest, source)

    def put_tensor(self, name: str, dtype: str, shape: list[int] | tuple[int, ...],
                   data: bytes | memoryview) -> PutResult:
        """Store one tensor from memory (raw little-endian bytes) as its canonical blob.

        What training checkpoints use: no intermediate safetensors file is written.
        """
        head = canonical_header(name, dtype, shape, len(data))
        digest = digest_bytes(head, data)
        size = len(head) + len(data)
        if self._have(digest, size):
            return PutResult(digest, size, written=False)
        with Batch(self) as batch:
            fd, tmp = self.layout.new_temp("obj")
            with _closing_on_error(fd, tmp):
                fsops.write_all(fd, head, tmp)
                fsops.write_all(fd, data, tmp)
            return batch.add(fd, tmp, digest, None)

    def put_tensors(self, source: Path, wanted: dict[str, str] | None = None,
                    on_bytes: Callable[[int], None] | None = None) -> list[StoredTensor]:
        """Split a safetensors file into canonical one-tensor blobs, at the byte level: the one
        re-split of the project (import, restore from a local folder or a Hub download); how,
        and why each blob's name is the digest of its bytes, is ``store.tensors.tensorsplit``'s.

        ``wanted``: only these tensors (name -> the digest a manifest expects), each stored
        only if it hashes to that digest (a source that changed stores nothing; its
        ``StoredTensor`` then carries the digest it has, for the caller to report).
        ``on_bytes(n)`` is told each tensor's size once it is stored (a progress bar)."""
        with open(source, "rb") as f:
            src = f.fileno()
            size = os.fstat(src).st_size
            header = read_header(source, size, fd=src)
            specs = [s for s in header.tensors if wanted is None or s.name in wanted]
            stored = []
            with Batch(self) as batch, \
                    hashed_copies(self, batch, src, size > header.data_start, specs, source) as copies:
                for copied in copies:
                    stored.append(StoredTensor(copied.spec, self._publish(batch, copied, source, wanted)))
                    if on_bytes is not None:
                        on_bytes(copied.spec.nbytes)
            return stored

    def _publish(self, batch: Batch, copied: Copied, source: Path, wanted: dict[str, str] | None) -> PutResult:
        """Queue a hashed copy in ``batch``, or drop it: the store has it, or (``wanted``) it
        is not the blob expected."""
        try:
            digest = copied.digest.result()
            expect = wanted.get(copied.spec.name) if wanted else None
            unwanted = (expect is not None and digest != expect) or self._have(digest, copied.size)
        except BaseException:  # its hash failed, or the mtime refresh of the stored twin did
            copied.discard()
            raise
        if unwanted:
            copied.discard()
            return PutResult(digest, copied.size, written=False)
        return batch.add(copied.fd, copied.tmp, digest, source, hashed_as_written=True, writeback=False)

    def missing_bytes(self, source: Path) -> int:
        """Bytes that storing ``source`` would write: its blobs not yet in the store.

        Safetensors files are counted per tensor blob, other files as one blob.
        """
        with open(source, "rb") as f:
            src = f.fileno()
            size = os.fstat(src).st_size
            if not str(source).endswith(".safetensors"):
                return 0 if self.size(digest_fd(src)) == size else size
            header = read_header(source, size, fd=src)
            missing = 0
            with map_source(src, size > header.data_start) as mapped:
                if mapped is None and size > header.data_start:  # cannot map it: count it all
                    return sum(len(canonical_header(t.name, t.dtype, t.shape, t.nbytes)) + t.nbytes
                               for t in header.tensors)
                for spec in header.tensors:
                    digest, blob_size = _tensor_digest(mapped, spec)
                    if self.size(digest) != blob_size:
                        missing += blob_size
            return missing

    def holds(self, digest: str, size: int) -> bool:
        """True if the object is present with the right size; its mtime is refreshed, so a
        concurrent gc spares it until the caller has referenced it."""
        return self._have(digest, size)

    def holds_all(self, objects: list[tuple[str, int]]) -> bool:
        """``holds`` for many objects (digest, size): True if every one is present with its
        size, and then every one's mtime is refreshed, in one pass (a re-import's blobs)."""
        paths = []
        for digest, size in objects:
            path = self.path(digest)
            try:
                if os.stat(path).st_size != size:
                    return False
            except FileNotFoundError:
                return False
            paths.append(path)
        return not fsops.touch_all(paths)  # one that gc took meanwhile is written again

    def _have(self, digest: str, size: int) -> bool:
        """True if the object is present with the right size (then its mtime is refreshed).

        A present object of the wrong size is damaged: it is written again, which heals it.
        """
        if self.size(digest) != size:
            return False
        try:
            fsops.touch(self.path(digest))
        except PermissionError:  # a store shared with other users: their objects stay as they are
            pass
        except FileNotFoundError:  # gc took it between the two calls: write it again
            return False
        return True


class Batch:
    """Temp files written but not yet published; fsync'd, verified and renamed together.

    Writeback of each file starts as soon as it is written, so the disk works while the next
    one is copied, and publishing a batch costs one directory fsync per fan-out directory
    rather than one per object. Leaving the ``with`` block publishes (or, on an error,
    removes every temp file of the batch).
    """

    MAX_FILES = 1024  # each holds an open descriptor: see _max_files
    MAX_BYTES = 1 << 30

    def __init__(self, store: ObjectStore):
        self.store = store
        self.pending: list[tuple[int, Path, str, Path | None]] = []
        self.hashed_as_written: set[Path] = set()  # temp files written from the bytes hashed
        self.bytes = 0
        self.made_early: set[Path] = set()  # fan-out folders made by ``make_folder``, not yet fsync'd
        self.max_files = _max_files(self.MAX_FILES)

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, kind, error, tb) -> None:
        if kind is None:
            self.flush()
        else:
            self.abort()

    def add(self, fd: int, tmp: Path, digest: str, source: Path | None, *,
            hashed_as_written: bool = False, writeback: bool = True) -> PutResult:
        """Queue a finished temp file; its object exists once the batch is flushed.

        ``hashed_as_written``: ``digest`` was taken from exactly the bytes written (private
        memory they were written from, or the temp file itself after its last write; never a
        map of a file someone else may change), so the file need not be read back and hashed
        again before it is published. ``writeback=False``: the caller started it already."""
        size = os.fstat(fd).st_size
        if writeback and size >= _WRITEBACK_FROM:
            fsops.start_writeback(fd)
        self.pending.append((fd, tmp, digest, source))
        if hashed_as_written:
            self.hashed_as_written.add(tmp)
        self.bytes += size
        if len(self.pending) >= self.max_files or self.bytes >= self.MAX_BYTES:
            self.flush()
        return PutResult(digest, size, written=True)

    def make_folder(self, digest: str) -> None:
        """Make the fan-out folder of ``digest`` now, ahead of the flush (from any thread): a
        writer that knows a digest before it queues the file moves the mkdir off its critical
        path. The flush fsyncs ``objects/`` for it, as for a folder it made itself."""
        folder = self.store.path(digest).parent
        if not folder.is_dir():
            fsops.mkdirs(folder)
            self.made_early.add(folder)

    def abort(self) -> None:
        for fd, tmp, _, _ in self.pending:
            os.close(fd)
            fsops.unlink(tmp)
        self.pending, self.bytes = [], 0
        self.hashed_as_written.clear()

    def flush(self) -> None:
        """fsync and verify every file, seal it 0444, rename it into place, fsync the dirs."""
        try:
            fsops.fsync_files([(fd, tmp) for fd, tmp, _, _ in self.pending])
            for fd, tmp, digest, source in self.pending:
                actual = digest if tmp in self.hashed_as_written else digest_fd(fd)
                if actual != digest:
                    if source is not None:
                        raise SourceChangedError(source)
                    raise CorruptObjectError(digest, tmp, actual, "the temp file did not read back as written")
                os.fchmod(fd, OBJECT_MODE)
        except BaseException:
            self.abort()
            raise
        batch, self.pending, self.bytes = self.pending, [], 0
        self.hashed_as_written.clear()
        fans: dict[Path, bool] = {}
        try:
            for fd, tmp, digest, _ in batch:
                os.close(fd)
            for i, (_, tmp, digest, _) in enumerate(batch):
                final = self.store.path(digest)
                if final.parent not in fans:
                    fans[final.parent] = not final.parent.is_dir() or final.parent in self.made_early
                    fsops.mkdirs(final.parent)
                try:
                    fsops.rename(tmp, final)
                except FileNotFoundError:
                    raise ObjectMissingError(digest, tmp, REMOVED_IN_FLIGHT_HINT) from None
        except BaseException:
            for _, tmp, _, _ in batch:
                fsops.unlink(tmp)
            raise
        dirs = [*fans, self.store.layout.objects] if any(fans.values()) else list(fans)
        fsops.fsync_paths(dirs)
        self.made_early -= set(fans)


# Below this size starting a file's writeback early gains nothing (its fsync follows soon),
# and a command that writes only small objects (a re-import's manifest) skips loading libc's
# sync_file_range through ctypes.
_WRITEBACK_FROM = 1 << 20


def _max_files(wanted: int) -> int:
    """``wanted``, or fewer where the process may open few files (a soft limit of 1024, the
    default of many systems, leaves half of it to the rest of the process)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return wanted if soft == resource.RLIM_INFINITY else max(16, min(wanted, soft // 2))


def _tensor_digest(mapped: mmap.mmap | None, spec: TensorSpec) -> tuple[str, int]:
    """Digest and size of the canonical blob of ``spec``, hashed straight from the source map."""
    head = canonical_header(spec.name, spec.dtype, spec.shape, spec.nbytes)
    if mapped is None or spec.nbytes == 0:
        return digest_bytes(head), len(head)
    with memoryview(mapped)[spec.start:spec.end] as data:
        return digest_bytes(head, data), len(head) + spec.nbytes


@contextmanager
def _closing_on_error(fd: int, tmp: Path) -> Iterator[None]:
    """On any error, close and remove the temp file so a failed write leaves nothing."""
    try:
        yield
    except BaseException:
        os.close(fd)
        fsops.unlink(tmp)
        raise
