"""Content-addressed objects: write once, verify by digest, share forever.

Every write goes: unique temp file in ``.modelstore/tmp/`` -> bytes -> fsync -> re-hash the
temp file (the name is always the digest of what is on disk, even if the source changed
under us) -> mode 0444 -> rename to ``objects/ab/cdef...`` -> fsync the directory. Tensors
split from a file skip the re-hash: they are read into private memory, hashed there and
written from there, so what is written is what was hashed (and a tensor too big to be read
whole is hashed again as it is written, and refused if the source changed). Putting
an object that already exists with the right size writes nothing; it only refreshes the
object's mtime so that a concurrent ``gc`` (which spares young objects) cannot collect a
blob an import is about to reference.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from store import fsops
from store.digest import Hasher, digest_bytes, digest_fd
from store.errors import REMOVED_IN_FLIGHT_HINT, CorruptObjectError, ObjectMissingError, SourceChangedError
from store.layout import OBJECT_MODE, Layout
from store.tensorfile import TensorSpec, canonical_header, read_header


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
        re-split of the project (import, restore from a local folder or a Hub download).

        ``wanted``: only these tensors (name -> the digest a manifest expects), each written
        only if it hashes to that digest (a source that changed writes nothing; its
        ``StoredTensor`` then carries the digest it has, for the caller to report).
        ``on_bytes(n)`` is told each tensor's size once it is stored (a progress bar)."""
        with open(source, "rb") as f:
            src = f.fileno()
            size = os.fstat(src).st_size
            header = read_header(source, size, fd=src)
            specs = [s for s in header.tensors if wanted is None or s.name in wanted]
            largest = max((spec.nbytes for spec in specs), default=0)
            buffer = memoryview(bytearray(min(largest, _COPY_BUFFER)))
            stored = []
            with Batch(self) as batch:
                for spec in specs:
                    stored.append(StoredTensor(spec, self._put_tensor(src, buffer, spec, source, batch,
                                                                      wanted.get(spec.name) if wanted else None)))
                    if on_bytes is not None:
                        on_bytes(spec.nbytes)
            return stored

    def _put_tensor(self, src: int, buffer: memoryview, spec: TensorSpec, source: Path,
                    batch: Batch, expect: str | None = None) -> PutResult:
        """One tensor, read into ``buffer`` (private memory, so the bytes written are exactly
        the bytes hashed, whatever happens to the source meanwhile): hashed, and written if
        the store lacks it. A tensor bigger than the buffer is hashed once in chunks, then
        read, hashed and written again, and refused if the source changed in between."""
        head = canonical_header(spec.name, spec.dtype, spec.shape, spec.nbytes)
        size = len(head) + spec.nbytes
        whole = spec.nbytes <= len(buffer)
        if whole:
            data = buffer[:spec.nbytes]
            _read_at(src, data, spec.start, source)
            digest = digest_bytes(head, data)
        else:
            digest = _copy_chunks(src, buffer, spec, head, None, source)
        if self._have(digest, size) or (expect is not None and digest != expect):
            return PutResult(digest, size, written=False)
        fd, tmp = self.layout.new_temp("obj")
        with _closing_on_error(fd, tmp):
            fsops.write_all(fd, head, tmp)
            # One large write per tensor (or chunk), not copy_file_range: the blob then sits in
            # the page cache as large folios, so a model mapped from the store faults its
            # weights in per folio rather than per 4 KB page (bench/load.py: 1.3x -> 1.0x time
            # to first logits). Reflinking could not apply anyway: the data starts at an
            # unaligned offset after the header.
            if whole:
                if spec.nbytes:
                    fsops.write_all(fd, data, tmp)
            elif _copy_chunks(src, buffer, spec, head, (fd, tmp), source) != digest:
                raise SourceChangedError(source)
        return batch.add(fd, tmp, digest, source, hashed_as_written=True)

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
            with _map(src, size > header.data_start) as mapped:
                for spec in header.tensors:
                    digest, blob_size = _tensor_digest(mapped, spec)
                    if self.size(digest) != blob_size:
                        missing += blob_size
            return missing

    def holds(self, digest: str, size: int) -> bool:
        """True if the object is present with the right size; its mtime is refreshed, so a
        concurrent gc spares it until the caller has referenced it."""
        return self._have(digest, size)

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

    MAX_FILES = 256
    MAX_BYTES = 1 << 30

    def __init__(self, store: ObjectStore):
        self.store = store
        self.pending: list[tuple[int, Path, str, Path | None]] = []
        self.hashed_as_written: set[Path] = set()  # temp files written from the bytes hashed
        self.bytes = 0

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, kind, error, tb) -> None:
        if kind is None:
            self.flush()
        else:
            self.abort()

    def add(self, fd: int, tmp: Path, digest: str, source: Path | None, *,
            hashed_as_written: bool = False) -> PutResult:
        """Queue a finished temp file; its object exists once the batch is flushed.

        ``hashed_as_written``: every byte written came from private memory that was hashed to
        ``digest`` (not from a map of a file someone else may change), so the file need not be
        read back and hashed again before it is published."""
        size = os.fstat(fd).st_size
        fsops.start_writeback(fd)
        self.pending.append((fd, tmp, digest, source))
        if hashed_as_written:
            self.hashed_as_written.add(tmp)
        self.bytes += size
        if len(self.pending) >= self.MAX_FILES or self.bytes >= self.MAX_BYTES:
            self.flush()
        return PutResult(digest, size, written=True)

    def abort(self) -> None:
        for fd, tmp, _, _ in self.pending:
            os.close(fd)
            fsops.unlink(tmp)
        self.pending, self.bytes = [], 0
        self.hashed_as_written.clear()

    def flush(self) -> None:
        """fsync and verify every file, seal it 0444, rename it into place, fsync the dirs."""
        try:
            for fd, tmp, digest, source in self.pending:
                fsops.fsync(fd, tmp)
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
                    fans[final.parent] = not final.parent.is_dir()
                    fsops.mkdirs(final.parent)
                try:
                    fsops.rename(tmp, final)
                except FileNotFoundError:
                    raise ObjectMissingError(digest, tmp, REMOVED_IN_FLIGHT_HINT) from None
        except BaseException:
            for _, tmp, _, _ in batch:
                fsops.unlink(tmp)
            raise
        for fan in fans:
            fsops.fsync_dir(fan)
        if any(fans.values()):
            fsops.fsync_dir(self.store.layout.objects)


# Tensors up to this size are read whole into one private buffer; bigger ones go in chunks.
_COPY_BUFFER = 64 << 20


def _read_at(src: int, into: memoryview, offset: int, source: Path) -> None:
    """Fill ``into`` with the source's bytes at ``offset``; a file that shrank is refused."""
    done = 0
    while done < len(into):
        with into[done:] as rest:
            count = os.preadv(src, [rest], offset + done)
        if count == 0:
            raise SourceChangedError(source)
        done += count


def _copy_chunks(src: int, buffer: memoryview, spec: TensorSpec, head: bytes,
                 dest: tuple[int, Path] | None, source: Path) -> str:
    """Digest of the tensor's canonical blob, read through ``buffer`` chunk by chunk; with
    ``dest`` (fd, path), each chunk is also written there, from the same memory it was hashed in."""
    hasher = Hasher()
    hasher.update(head)
    for offset in range(spec.start, spec.end, len(buffer)):
        with buffer[:min(len(buffer), spec.end - offset)] as chunk:
            _read_at(src, chunk, offset, source)
            hasher.update(chunk)
            if dest is not None:
                fsops.write_all(dest[0], chunk, dest[1])
    return hasher.hexdigest()


def _tensor_digest(mapped: mmap.mmap | None, spec: TensorSpec) -> tuple[str, int]:
    """Digest and size of the canonical blob of ``spec``, hashed straight from the source map."""
    head = canonical_header(spec.name, spec.dtype, spec.shape, spec.nbytes)
    if mapped is None or spec.nbytes == 0:
        return digest_bytes(head), len(head)
    with memoryview(mapped)[spec.start:spec.end] as data:
        return digest_bytes(head, data), len(head) + spec.nbytes


@contextmanager
def _map(fd: int, has_data: bool) -> Iterator[mmap.mmap | None]:
    """A read-only map of the whole file; None when it holds no tensor bytes (mmap refuses 0)."""
    if not has_data:
        yield None
        return
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
        yield mapped


@contextmanager
def _closing_on_error(fd: int, tmp: Path) -> Iterator[None]:
    """On any error, close and remove the temp file so a failed write leaves nothing."""
    try:
        yield
    except BaseException:
        os.close(fd)
        fsops.unlink(tmp)
        raise
