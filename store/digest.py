"""BLAKE3 digests: the only hash modelstore names objects by (hex, 64 characters)."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import blake3

DIGEST_HEX_LENGTH = 64
_HEX = frozenset("0123456789abcdef")
# Below this size the thread pool costs more than it saves.
_THREADED_FROM = 4 << 20


def is_digest(text: str) -> bool:
    return len(text) == DIGEST_HEX_LENGTH and set(text) <= _HEX


class Hasher:
    """Incremental BLAKE3 that uses every core for large inputs (or one: ``threaded=False``)."""

    def __init__(self, threaded: bool = True) -> None:
        self._hash = blake3.blake3(max_threads=blake3.blake3.AUTO if threaded else 1)

    def update(self, data: bytes | memoryview | mmap.mmap) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def digest_bytes(*parts: bytes | memoryview | mmap.mmap) -> str:
    hasher = Hasher() if sum(len(p) for p in parts) >= _THREADED_FROM else blake3.blake3()
    for part in parts:
        hasher.update(part)
    return hasher.hexdigest()


def digest_file(path: Path | str) -> str:
    """Digest of a file's bytes, through mmap so large files hash on every core."""
    with open(path, "rb") as f:
        return digest_fd(f.fileno())


def digest_fd(fd: int) -> str:
    size = os.fstat(fd).st_size
    if size == 0:
        return blake3.blake3().hexdigest()
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
        return digest_bytes(mapped)


def digest_stream(fd: int, buffer: bytearray) -> str:
    """Digest of a file read sequentially through ``buffer``, on one core.

    For verifying many objects at once from a pool of threads: reading into a reused
    buffer avoids the page-fault cost of mapping each file (about a third faster on a warm
    page cache), and the pool, not BLAKE3's own threads, spreads the work over the cores.
    """
    hasher = blake3.blake3()
    view = memoryview(buffer)
    while True:
        count = os.readv(fd, [view])
        if not count:
            return hasher.hexdigest()
        hasher.update(view[:count])
