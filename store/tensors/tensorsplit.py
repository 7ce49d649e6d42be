"""Splitting a local safetensors file into canonical one-tensor blobs, at the speed of a copy.

What a local import of 1 GB costs is mostly moving bytes, so each byte is moved once by the
kernel and read once by the hash, and the two overlap:

1. **copy**: the blob's canonical header, then the tensor's bytes, go into a fresh temp file
   with ``write`` straight from a read-only map of the source: no Python buffer, no
   ``pread`` into private memory. Writes of 256 KB, aligned in the blob (``fsops.WRITE_CHUNK``;
   not ``copy_file_range``, which splices 4 KB pages), from source pages mapped
   beforehand (``_populate``), let the page cache hold the blob as 256 KB folios, so a model
   mapped from the store later faults its weights in per folio, not per 4 KB page;
2. **hash**: the temp file, as written, is hashed through its own map, in a worker thread,
   while the main thread copies the next tensor (BLAKE3 and ``write`` both release the GIL);
3. **publish** (``ObjectStore.put_tensors``): a temp file whose digest the store lacks
   starts its writeback at once (from a third thread: a busy disk blocks that call) and joins
   a ``Batch`` (fsync'd, sealed 0444, renamed into ``objects/``); one whose digest the store
   holds is dropped before any of its pages reach the disk.

Why the name is always the digest of the blob's bytes on disk: the digest is taken from the
temp file itself, after its last byte was written, not from the source. Nothing else writes
that file (a new ``O_EXCL`` file, mode 0600, in the store's own ``tmp/``), so whatever the
source did meanwhile (rewritten in place, written through someone's shared map, truncated),
the bytes hashed are the bytes that are fsync'd and renamed. Hashing the source's map and
copying it separately would need the source to hold still between the two, which no check
can prove: ``stat`` identity misses a second write within one timestamp tick, and a write
into a page already dirty through a shared map moves no timestamp at all. A source that
changed mid-copy therefore yields a blob of a tensor that never existed whole, but a blob
named correctly; what it means for the model is settled where it always was: ``wanted``
digests (restores) drop a blob that is not the one expected, and an import records the
digests it got, which the source cache only trusts if the file's identity did not move
while it was hashed (``store.sourcecache``). A source truncated under the copy makes the
kernel's read of the map fail (``EFAULT``, never a ``SIGBUS``, since only the kernel touches
the map): ``SourceChangedError``.

The cost of this order: a tensor the store already holds is still copied (into the page
cache only, then dropped), where hashing the source first would have read it once. A first
import, the case that writes, pays nothing for it; a re-import of unchanged files never
gets here (``store.sourcecache``).
"""

from __future__ import annotations

import errno
import mmap
import os
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from store.fs import fsops
from store.digest import digest_fd
from store.errors import SourceChangedError
from store.tensors.tensorfile import TensorSpec, canonical_header

if TYPE_CHECKING:  # at run time, store.objects imports this module
    from concurrent.futures import Future, ThreadPoolExecutor

    from store.objects import Batch, ObjectStore


# Copies that may wait for their hash: the copy runs ahead of the hash by up to this many
# tensors (each an open temp file), so a large tensor's hash overlaps the copies after it.
_AHEAD = 16


class Copied:
    """A temp file holding one tensor's canonical blob; ``digest`` resolves to the digest of
    its bytes as written. Its owner queues it in a batch or ``discard``s it."""

    def __init__(self, spec: TensorSpec, fd: int, tmp: Path, size: int, digest: Future[str]):
        self.spec, self.fd, self.tmp, self.size, self.digest = spec, fd, tmp, size, digest

    def discard(self) -> None:
        os.close(self.fd)
        fsops.unlink(self.tmp)


@contextmanager
def hashed_copies(store: ObjectStore, batch: Batch, src: int, has_data: bool, specs: list[TensorSpec],
                  source: Path) -> Iterator[Iterator[Copied]]:
    """Yields an iterator over a ``Copied`` per spec (in order) of the source open as ``src``:
    the caller publishes each (``ObjectStore.put_tensors``) while the next ones are copied and
    hashed. On an error, the copies not yet handed over are removed."""
    from concurrent.futures import ThreadPoolExecutor  # only commands that split files need threads

    pending: deque[Copied] = deque()
    with map_source(src, has_data) as mapped, \
            ThreadPoolExecutor(1, thread_name_prefix="modelstore-writeback") as writeback, \
            ThreadPoolExecutor(1, thread_name_prefix="modelstore-hash") as hashing:

        def copies() -> Iterator[Copied]:
            for spec in specs:
                fd, tmp = copy_tensor(store, src, mapped, spec, source)
                digest = hashing.submit(_hash_then_write_back, store, batch, fd, writeback)
                pending.append(Copied(spec, fd, tmp, os.fstat(fd).st_size, digest))
                while len(pending) > _AHEAD or (pending and pending[0].digest.done()):
                    yield pending.popleft()
            while pending:
                yield pending.popleft()

        try:
            yield copies()
        finally:
            for copied in pending:  # only on an error: a finished iterator leaves none
                _wait_quietly(copied.digest)
                copied.discard()


def copy_tensor(store: ObjectStore, src: int, mapped: mmap.mmap | None, spec: TensorSpec,
                source: Path) -> tuple[int, Path]:
    """A new temp file holding ``spec``'s canonical blob, copied from the source: (fd, path)."""
    head = canonical_header(spec.name, spec.dtype, spec.shape, spec.nbytes)
    fd, tmp = store.layout.new_temp("obj")
    try:
        fsops.write_all(fd, head, tmp)
        if spec.nbytes and mapped is not None:
            _populate(mapped, spec.start, spec.end)
            with memoryview(mapped)[spec.start:spec.end] as data:
                fsops.write_all(fd, data, tmp, at=len(head))
        elif spec.nbytes:  # no map (a filesystem that refuses mmap): the kernel copies
            fsops.copy_range(src, fd, spec.start, spec.nbytes, tmp)
        if os.fstat(fd).st_size != len(head) + spec.nbytes:
            raise SourceChangedError(source)
    except OSError as e:
        os.close(fd)
        fsops.unlink(tmp)
        if e.errno == errno.EFAULT or (e.errno == errno.EIO and "ended early" in str(e)):
            raise SourceChangedError(source) from None  # the source shrank under the copy
        raise
    except BaseException:
        os.close(fd)
        fsops.unlink(tmp)
        raise
    return fd, tmp


_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux 5.14; Python has no name for it


def _populate(mapped: mmap.mmap, start: int, end: int) -> None:
    """Map the source's pages of ``start:end`` before the write reads them.

    A write from a map whose pages are not mapped yet copies short at each fault, and the
    kernel then shrinks its chunks to single pages: the blob lands in the page cache as 4 KB
    folios, and a model mapped from the store faults its weights in 5-10x slower (touching
    every page of the 0.5B model's blobs: 0.2-0.3 s instead of 0.03 s). Where the kernel
    cannot (before 5.14), the write still works, with small folios."""
    aligned = start - start % mmap.PAGESIZE
    try:
        mapped.madvise(_MADV_POPULATE_READ, aligned, end - aligned)
    except OSError:
        pass


def _hash_then_write_back(store: ObjectStore, batch: Batch, fd: int, writeback: ThreadPoolExecutor) -> str:
    """The digest of the copy; a blob the store lacks starts its writeback in the writeback
    worker (the kernel may block it on a busy disk; neither copy nor hash waits for that),
    and gets its fan-out folder now rather than when the batch is published; one the store
    holds is dropped before its pages are written."""
    digest = digest_fd(fd)  # the temp file as written
    if store.size(digest) != os.fstat(fd).st_size:
        writeback.submit(_start_writeback, os.dup(fd))
        batch.make_folder(digest)
    return digest


def _start_writeback(fd: int) -> None:
    """On a duplicate of the temp file's descriptor: the batch may close its own meanwhile."""
    try:
        fsops.start_writeback(fd)
    finally:
        os.close(fd)


def _wait_quietly(future: Future) -> None:
    try:
        future.result()
    except BaseException:
        pass


@contextmanager
def map_source(fd: int, has_data: bool) -> Iterator[mmap.mmap | None]:
    """A read-only map of the whole file; None when it holds no tensor bytes (mmap refuses 0)
    or the filesystem cannot map it (then the kernel copies with ``copy_file_range``)."""
    if not has_data:
        yield None
        return
    try:
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except OSError:
        yield None
        return
    with mapped:
        yield mapped
