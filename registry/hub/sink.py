"""Where a Hub download's bytes go (``http_get`` writes into a sink), hashed as they arrive.

- ``Sink``: a temp file, or memory for small files;
- ``StreamSink``: handed on, in order, to a consumer (``store.tensors.tensorstream.TensorStream``:
  a weight file becomes tensor blobs as it downloads) and kept nowhere here.

Either way the bytes are hashed as they pass, sha256 for LFS files and the git blob id for
the others, and ``check()`` says whether they are the bytes the Hub lists. huggingface_hub's
``http_get`` calls ``write``, ``tell``, and, when a server ignores the ``Range`` of a
resume (answers 200 with the whole file), ``seek`` back to where the download began
(``tell() - resume_size``: 0 here) and ``truncate()``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from registry.report import human_bytes
from store.fs import fsops
from registry.hub.errors import HubDownloadError, HubError, HubIntegrityError

if TYPE_CHECKING:
    from registry.hub.download import RemoteFile

HASH_CHUNK = 16 << 20
# mallopt(3) parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


class FileHasher:
    """sha256 for LFS files; for the others the git blob id (sha1 of ``blob <size>\\0`` + bytes)."""

    def __init__(self, f: RemoteFile, repo_id: str | None = None):
        if f.size is None or not (f.sha256 or f.git_oid or f.size_only):
            raise HubError(repo_id, f"the Hub listed {f.path} without its size and hash, so it cannot be "
                                    "verified", "use an endpoint that serves file metadata (the Hub does)")
        self.file = f
        if f.size_only:  # accepted by the user (--trust-size-only): the length is all there is to check
            self.kind, self.expected, self.hash = "size", None, None
        elif f.is_lfs:
            self.kind, self.expected, self.hash = "sha256", f.sha256, hashlib.sha256()
        else:
            self.kind, self.expected = "git blob id", f.git_oid
            self.hash = hashlib.sha1(b"blob %d\0" % f.size)

    def update(self, data: bytes | memoryview) -> None:
        if self.hash is not None:
            self.hash.update(data)

    def matches(self) -> bool:
        return self.hash is None or self.hash.hexdigest() == self.expected


class Sink:
    """What ``http_get`` writes into: a temp file (or memory), hashed as bytes arrive.

    http_get only appends, except when a server ignores a ``Range`` resume: then it seeks
    back and truncates, and the hash is recomputed from what is kept.
    """

    def __init__(self, repo_id: str, f: RemoteFile, fd: int | None = None, path: Path | None = None, *,
                 hash_only: bool = False):
        self.repo_id, self.file, self.fd, self.path = repo_id, f, fd, path
        self.hash_only = hash_only  # the bytes are kept elsewhere (a transfer's partial): hash them only
        self.buffer = bytearray()
        self.hasher = FileHasher(f, repo_id)
        self.pos = 0
        self.rehash = False

    def write(self, data: bytes) -> int:
        self._check_length(len(data))
        if self.hash_only:
            pass
        elif self.fd is None:
            self.buffer += data
        else:
            fsops.write_all(self.fd, data, self.path)
        self.hasher.update(data)
        self.pos += len(data)
        return len(data)

    def _check_length(self, more: int) -> None:
        if self.pos + more > self.file.size:
            raise HubDownloadError(self.repo_id, f"{self.file.path} of {self.repo_id} is longer than the "
                                                 f"{human_bytes(self.file.size)} the Hub lists for it")

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos
        if self.fd is not None:
            os.lseek(self.fd, self.pos, os.SEEK_SET)
        self.rehash = True
        return self.pos

    def truncate(self, size: int | None = None) -> int:
        size = self.pos if size is None else size
        if self.fd is None:
            del self.buffer[size:]
        else:
            fsops.truncate(self.fd, size, self.path)
        self.rehash = True
        return size

    def close(self) -> None:
        """Called once the transfer is over, whatever happened (a temp file stays open)."""

    def check(self) -> None:
        """Raise ``HubIntegrityError`` unless the bytes received hash to what the Hub lists."""
        repo_id = self.repo_id
        if self.rehash:
            self.hasher = FileHasher(self.file, repo_id)
            if self.fd is None:
                self.hasher.update(self.buffer)
            else:
                for offset in range(0, self.pos, HASH_CHUNK):
                    self.hasher.update(os.pread(self.fd, min(HASH_CHUNK, self.pos - offset), offset))
        if self.pos != self.file.size:
            raise HubDownloadError(repo_id, f"{self.file.path} of {repo_id} arrived with {self.pos} bytes, "
                                            f"expected {self.file.size}")
        if not self.hasher.matches():
            raise HubIntegrityError(repo_id, self.file.path, self.hasher.kind, self.hasher.expected or "",
                                    self.hasher.hash.hexdigest())


class Consumer(Protocol):
    """What a ``StreamSink`` hands the bytes to (``store.tensors.tensorstream.TensorStream`` is one)."""

    def write(self, data: bytes) -> int: ...

    def restart(self) -> None: ...


class StreamSink(Sink):
    """The bytes go on to ``consumer`` as they arrive; nothing is kept here.

    Hashing and the consumer's work (hashing again, writing) run in a second thread, fed
    through a short queue, so that they overlap receiving the next chunk: both mostly release
    the GIL. ``close()`` waits for that thread; what it raised is raised by the next
    ``write`` or by ``check``. The only rewind http_get makes, back to byte 0 when a server
    ignored ``Range``, restarts the consumer and the hash: the whole file follows.
    """

    QUEUED_CHUNKS = 3  # http_get's chunks are 10 MB

    def __init__(self, repo_id: str, f: RemoteFile, consumer: Consumer):
        super().__init__(repo_id, f)
        keep_freed_memory()  # chunks in flight: see there
        self.consumer = consumer
        self.failure: BaseException | None = None
        self.queue: queue.Queue[bytes | None] = queue.Queue(self.QUEUED_CHUNKS)
        self.thread = threading.Thread(target=self._work, name=f"hub-stream {f.path}", daemon=True)
        self.thread.start()

    def write(self, data: bytes) -> int:
        self._check_length(len(data))
        self._raise_failure()
        self.queue.put(data)
        self.pos += len(data)
        return len(data)

    def _work(self) -> None:
        while (data := self.queue.get()) is not None:
            try:
                if self.failure is None:
                    self.consumer.write(data)
                    self.hasher.update(data)
            except BaseException as e:  # noqa: BLE001 - handed to the receiving thread
                self.failure = e
            finally:
                self.queue.task_done()
        self.queue.task_done()

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def seek(self, pos: int, whence: int = 0) -> int:
        target = pos if whence == 0 else self.pos + pos
        if target != self.pos:
            if target != 0:  # http_get never asks this of a sink that began at byte 0
                raise HubDownloadError(self.repo_id, f"cannot rewind the download of {self.file.path} of "
                                                     f"{self.repo_id} to byte {target}")
            self.queue.join()
            self._raise_failure()
            self.consumer.restart()
            self.hasher, self.pos = FileHasher(self.file, self.repo_id), 0
        return self.pos

    def truncate(self, size: int | None = None) -> int:
        return self.pos  # what is dropped was dropped by seek (only ever to 0, with everything)

    def close(self) -> None:
        """Wait until every byte written is handed on, and end the thread."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def check(self) -> None:
        """Raise what the consumer raised, else as ``Sink.check``; after ``close()``."""
        self._raise_failure()
        super().check()


@functools.cache
def keep_freed_memory() -> None:
    """Let glibc keep freed memory for the next allocations of this process.

    http_get hands over 10 MB chunks, and a ``StreamSink`` has a few in flight at once. By
    default glibc then returns the top of its heap to the kernel each time one is freed, and
    the next chunk faults in fresh pages the kernel must zero: about 0.7 CPU-s per GB on the
    2-core dev machine (0.45 s of a 1 GB import). The load-check worker's imports of torch
    and transformers gain 0.1 s the same way. Blocks up to 64 MB now come from the heap and
    up to 256 MB of it stay mapped. A no-op without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 64 << 20)
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)
