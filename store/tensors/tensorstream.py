"""Splitting a safetensors file into canonical tensor blobs while its bytes arrive.

What a Hub download writes into (``registry.hub.stream``): the weight file is written to disk
once, as its blobs, instead of whole into a temp file that is then read again and split
(``ObjectStore.put_tensors``). The bytes must come in file order:

1. the first 8 bytes and the JSON header are buffered, then validated exactly as
   ``read_header`` does (the file's size is known up front); ``on_header`` runs the caller's
   own checks (tensor names, the checkpoint index) before any blob is started;
2. each tensor's bytes are hashed (BLAKE3) as they pass. A tensor of up to ``GATHER_BYTES``
   is gathered in memory and written to a temp blob in ``tmp/`` only once it is complete and
   the store lacks it, so a tensor the store already holds (a new revision that changed a
   few tensors, a repo whose weights were imported from a folder) costs no disk write. A
   bigger one goes, behind its canonical header, straight into a temp blob as it arrives,
   deleted on completion if the store holds it. Complete temp blobs wait, closed (a shard
   of thousands of tensors must not hold thousands of fds);
3. ``finish()`` (``stored()``, then ``publish()``), called only once the caller has verified
   the whole file (the Hub's sha256), publishes the waiting blobs the way ``ObjectStore``
   publishes a local import's (``Batch``: fsync, 0444, rename, fan-out fsync; not read back,
   as every byte written was hashed on its way in from private memory). Between the two the
   caller may use the waiting blobs (``awaiting()``: the import's load check hard-links them).
   ``abort()`` removes them instead, and a crash leaves them as temp files, which gc sweeps.
   ``restart()`` begins again at byte 0 (a server that ignored a resume's ``Range`` sends
   the whole file again).

A header that fails validation is not raised from ``write``: the rest of the bytes are still
taken (and dropped) so that the caller can first tell bytes damaged in transit (a hash
mismatch, which can garble a header too) from a file that is bad as published; ``finish``
raises it. Nothing is written once it is known.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from store.fs import fsops
from store.digest import Hasher
from store.errors import REMOVED_IN_FLIGHT_HINT, ModelStoreError, ObjectMissingError, SafetensorsError
from store.objects import ObjectStore, PutResult, StoredTensor, Batch
from store.tensors.tensorfile import TensorFileHeader, TensorSpec, canonical_header, header_length, parse_header

# Tensors up to this size are gathered in memory before anything of them is written.
GATHER_BYTES = 32 << 20
# Waiting temp blobs get a fresh mtime this often (seconds): gc sweeps temp files older than
# its grace period (1 hour by default), and a slow download can keep blobs waiting longer.
REFRESH_S = 600.0


@dataclass
class _Blob:
    """The tensor being received: gathered in memory, or written to a temp blob as it comes
    (its canonical header, then its bytes)."""

    spec: TensorSpec
    head: bytes
    hasher: Hasher
    gathered: int | None = None  # a small tensor: how many of its bytes are in the gather buffer
    fd: int | None = None  # a big tensor's temp blob
    tmp: Path | None = None

    @property
    def size(self) -> int:
        return len(self.head) + self.spec.nbytes


class TensorStream:
    """A write-only file of ``size`` bytes (safetensors) that becomes tensor blobs as it is written.

    ``name``: what errors call the file (e.g. ``Qwen/Qwen2.5-0.5B@abc123/model.safetensors``).
    ``on_header(header)``: more checks of the parsed header; what it raises counts as a header
    error. It runs again after a ``restart()``.
    """

    def __init__(self, store: ObjectStore, size: int, name: Path | str,
                 on_header: Callable[[TensorFileHeader], None] | None = None):
        self.store, self.size, self.name, self.on_header = store, size, Path(name), on_header
        # One buffer, reused by every small tensor: growing a fresh bytearray per tensor costs
        # a realloc and fresh pages each time, about as much CPU as hashing the bytes.
        self.gather = bytearray(0)
        self._begin()

    def _begin(self) -> None:
        self.received = 0
        self.head = bytearray()  # the first 8 bytes, then the JSON header
        self.head_size = min(8, self.size)  # how much of it to buffer before looking again
        self.header: TensorFileHeader | None = None
        self.header_bytes = b""  # the 8-byte length and the JSON header, once parsed
        self.error: ModelStoreError | None = None
        self.order: list[TensorSpec] = []  # tensors by position in the file
        self.next = 0  # index in ``order`` of the tensor being received
        self.blob: _Blob | None = None
        self.waiting: list[tuple[Path, str]] = []  # complete temp blobs and their digests
        self.results: dict[str, PutResult] = {}
        self.refreshed = time.monotonic()

    # --- receiving -------------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> int:
        end = self.received + len(data)
        if end > self.size:
            raise SafetensorsError(self.name, f"more than the {self.size} bytes announced arrived")
        if self.error is None:
            try:
                with memoryview(data) as view, view.cast("B") as flat:
                    self._take(flat)
                if self.waiting and time.monotonic() - self.refreshed >= REFRESH_S:
                    self._refresh()
            except BaseException:
                self.abort()
                raise
        self.received = end
        return len(data)

    def _take(self, data: memoryview) -> None:
        pos = 0
        while self.error is None and (pos < len(data) or self._ready()):
            with data[pos:] as rest:
                pos += self._take_header(rest) if self.header is None else self._take_tensor(rest)

    def _ready(self) -> bool:
        """Whether there is work that needs no more bytes: a buffered header, empty tensors."""
        if self.header is None:
            return len(self.head) == self.head_size
        return self.next < len(self.order) and self.order[self.next].nbytes == 0

    def _take_header(self, data: memoryview) -> int:
        taken = min(len(data), self.head_size - len(self.head))
        self.head += data[:taken]
        self.received += taken
        if len(self.head) < self.head_size:
            return taken
        try:
            if self.head_size == min(8, self.size):  # the length is in: now the header itself
                self.head_size = 8 + header_length(self.name, bytes(self.head), self.size)
                if self.head_size > 8:
                    return taken
            header = parse_header(self.name, bytes(self.head[8:]), self.size)
            if self.on_header is not None:
                self.on_header(header)
        except ModelStoreError as e:
            self.error = e
            return len(data)
        self.header_bytes = bytes(self.head)  # as published: kept for a byte-exact export
        self.header, self.head = header, bytearray()
        self.order = sorted(header.tensors, key=lambda s: (s.start, s.end))
        return taken

    def _take_tensor(self, data: memoryview) -> int:
        spec = self.order[self.next]
        if self.blob is None:
            self.blob = self._open(spec)
        taken = min(len(data), spec.end - self.received)
        if taken:
            with data[:taken] as piece:
                if self.blob.gathered is not None:
                    self.gather[self.blob.gathered:self.blob.gathered + taken] = piece
                    self.blob.gathered += taken
                else:
                    fsops.write_all(self.blob.fd, piece, self.blob.tmp)
                self.blob.hasher.update(piece)
            self.received += taken
        if self.received == spec.end:
            self._close()
            self.next += 1
        return taken

    def _open(self, spec: TensorSpec) -> _Blob:
        head = canonical_header(spec.name, spec.dtype, spec.shape, spec.nbytes)
        # One thread: the bytes are hashed beside the download (and, in an import, the load
        # check's worker starting up); BLAKE3's own threads only contend for the same cores.
        hasher = Hasher(threaded=False)
        hasher.update(head)
        if spec.nbytes <= GATHER_BYTES:
            if len(self.gather) < spec.nbytes:
                self.gather = bytearray(min(GATHER_BYTES, max(spec.nbytes, 2 * len(self.gather))))
            return _Blob(spec, head, hasher, gathered=0)
        fd, tmp = self._new_temp(head)
        return _Blob(spec, head, hasher, fd=fd, tmp=tmp)

    def _new_temp(self, *parts: bytes | memoryview) -> tuple[int, Path]:
        """A temp blob holding ``parts``, open for more; removed again if a write fails."""
        fd, tmp = self.store.layout.new_temp("obj")
        try:
            for part in parts:
                fsops.write_all(fd, part, tmp)
        except BaseException:
            os.close(fd)
            fsops.unlink(tmp)
            raise
        return fd, tmp

    def _close(self) -> None:
        """The tensor is complete: keep its blob for publishing, unless the store has it."""
        blob, self.blob = self.blob, None
        digest = blob.hasher.hexdigest()
        have = self.store.holds(digest, blob.size)
        if blob.gathered is not None and not have:
            with memoryview(self.gather) as whole, whole[:blob.gathered] as gathered:
                blob.fd, blob.tmp = self._new_temp(blob.head, gathered)
        if blob.fd is not None:
            if not have:
                fsops.start_writeback(blob.fd)  # the disk works while the rest downloads
            os.close(blob.fd)
            if have:
                fsops.unlink(blob.tmp)
            else:
                self.waiting.append((blob.tmp, digest))
        self.results[blob.spec.name] = PutResult(digest, blob.size, written=not have)

    def _refresh(self) -> None:
        for tmp, _ in self.waiting:
            fsops.touch(tmp)
        self.refreshed = time.monotonic()

    # --- ending --------------------------------------------------------------------------

    def finish(self) -> list[StoredTensor]:
        """Publish the blobs; call it only once every byte is verified. Tensors in header order."""
        stored = self.stored()
        self.publish()
        return stored

    def stored(self) -> list[StoredTensor]:
        """The file's tensors (in header order) once all of it arrived, their blobs not yet
        published; raises (and removes the blobs) if the file was incomplete or bad."""
        try:
            if self.received == self.size == 0:
                self._take(memoryview(b""))  # an empty file gets no write: refuse it as read_header does
            if self.error is not None:
                raise self.error
            if self.header is None or self.received != self.size:
                raise SafetensorsError(self.name, f"file ended after {self.received} of {self.size} bytes")
        except BaseException:
            self.abort()
            raise
        return [StoredTensor(spec, self.results[spec.name]) for spec in self.header.tensors]

    def awaiting(self) -> dict[str, Path]:
        """Digest -> temp blob, for the blobs that ``publish`` will add to the store."""
        return {digest: tmp for tmp, digest in self.waiting}

    def publish(self) -> None:
        """Add the waiting blobs to the store; call it only once every byte is verified."""
        try:
            self._publish()
        except BaseException:
            self.abort()
            raise

    def _publish(self) -> None:
        waiting, self.waiting = self.waiting, []
        added = 0
        try:
            with Batch(self.store) as batch:  # publishes every 256 files / 1 GB: fds stay bounded
                for tmp, digest in waiting:
                    try:
                        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                    except FileNotFoundError:
                        raise ObjectMissingError(digest, tmp, REMOVED_IN_FLIGHT_HINT) from None
                    added += 1
                    # Every byte written came from private memory (the downloaded chunks, the
                    # gather buffer) and was hashed on its way in: no need to read it back.
                    batch.add(fd, tmp, digest, None, hashed_as_written=True)
        finally:
            for tmp, _ in waiting[added:]:
                fsops.unlink(tmp)

    def abort(self) -> None:
        """Remove every temp blob of this file; nothing of it gets published."""
        blob, self.blob = self.blob, None
        if blob is not None and blob.fd is not None:
            os.close(blob.fd)
            fsops.unlink(blob.tmp)
        waiting, self.waiting = self.waiting, []
        for tmp, _ in waiting:
            fsops.unlink(tmp)

    def restart(self) -> None:
        """Drop everything received and begin again at byte 0."""
        self.abort()
        self._begin()
