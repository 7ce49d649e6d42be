"""A remote's raw object I/O: the URL, and one backend per scheme behind one small interface.

``s3://bucket/prefix`` (any S3-compatible server, through obstore: ``store.remote.s3``) and
``file:///path`` (a folder, with plain POSIX calls: ``store.remote.file``). Keys are
``/``-separated and relative to the prefix (``FORMAT``, ``objects/ab/cdef...``,
``refs/NAME``, ``locks/gc``); a backend refuses any other shape of key, so nothing it is
handed can address something outside the remote.

Objects are written whole or not at all (S3 completes a multipart upload atomically; a
folder gets a temp file renamed into place). The one mutable kind of object, a ref, is
written only through ``create`` (If-None-Match: *) and ``replace`` (If-Match: etag), so of two
writers exactly one wins and the other gets ``RefExistsError`` / ``RefMovedError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from store.remote.errors import RemoteURLError

# What a key may look like: fixed top-level folders, then safe components.
_KEY = re.compile(r"(FORMAT|objects/[0-9a-f]{2}/[0-9a-f]{62}|refs/[A-Za-z0-9][A-Za-z0-9._+-]{0,99}"
                  r"|locks/[a-z0-9-]{1,64})")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._+=-]+")


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key) or ".." in key:
        raise ValueError(f"not a remote key: {key!r}")
    return key


@dataclass(frozen=True)
class RemoteURL:
    scheme: str  # "s3" | "file"
    location: str  # the bucket (s3) or the absolute folder (file)
    prefix: str  # s3 only: the key prefix inside the bucket, "" for none

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.location}"
        return f"s3://{self.location}/{self.prefix}".rstrip("/")


def parse_url(url: str) -> RemoteURL:
    """``s3://bucket[/prefix]`` or ``file:///absolute/path``; anything else is refused."""
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise RemoteURLError(repr(url), "it contains control characters")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise RemoteURLError(url, "it has a query or a fragment")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise RemoteURLError(url, "a file URL names a local folder: file:///absolute/path")
        path = parts.path.rstrip("/")
        if not path.startswith("/") or any(p in (".", "..") for p in path.split("/")):
            raise RemoteURLError(url, "the path must be absolute, without '.' or '..'")
        return RemoteURL("file", path, "")
    if parts.scheme == "s3":
        if not _BUCKET.fullmatch(parts.netloc or ""):
            raise RemoteURLError(url, f"{parts.netloc!r} is not a bucket name")
        prefix = parts.path.strip("/")
        if prefix and not all(_PREFIX_PART.fullmatch(p) and p not in (".", "..") for p in prefix.split("/")):
            raise RemoteURLError(url, "the prefix may hold only letters, digits and . _ + = - between '/'")
        return RemoteURL("s3", parts.netloc, prefix)
    raise RemoteURLError(url, f"the scheme {parts.scheme + '://' if parts.scheme else '(none)'} is not supported")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None
    mtime: float  # seconds since the epoch


class Backend:
    """What a remote can do. Every method takes keys relative to the remote's prefix."""

    label: str  # the remote's name, for messages

    def head(self, key: str) -> ObjectInfo | None:
        raise NotImplementedError

    def get(self, key: str, limit: int) -> tuple[bytes, str | None] | None:
        """The whole object and its etag, None if absent; more than ``limit`` bytes is refused."""
        raise NotImplementedError

    def download(self, key: str, sink: Callable[[memoryview | bytes], None], limit: int) -> int:
        """Stream the object into ``sink`` chunk by chunk (bounded memory); the byte count.
        More than ``limit`` bytes stops the transfer (``RemoteCorruptError``)."""
        raise NotImplementedError

    def put(self, key: str, chunks: Iterable[bytes | memoryview], size: int) -> None:
        """Write an immutable object (replacing a damaged copy is harmless: same bytes)."""
        raise NotImplementedError

    def create(self, key: str, data: bytes) -> str | None:
        """Write ``key`` only if it does not exist (``RefExistsError``); its new etag."""
        raise NotImplementedError

    def replace(self, key: str, data: bytes, etag: str) -> str | None:
        """Write ``key`` only if its etag is still ``etag`` (``RefMovedError``); its new etag."""
        raise NotImplementedError

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError
