"""Objects, manifests and refs on a remote, with the store's own rules applied at the border.

``RemoteStore`` wraps a ``Backend`` (``store.remote.backend``) with the remote layout
(``FORMAT``, ``objects/ab/cdef...``, ``refs/NAME``, ``locks/...``) and does the two transfers:

- ``upload``: a local object is read in chunks and hashed as it goes up; a local object that
  does not hash to its name fails the upload before it completes (the last chunk is only
  handed over once the whole digest matched), so a damaged local blob never reaches the remote.
- ``download``: a remote object is streamed into a unique temp file in ``.modelstore/tmp/``
  and hashed as it is written, its writeback started after every chunk (so the fsync that
  seals it finds little left to write: in one 5-round A/B on the 1 GB bench model, a pull
  took 1.07x a plain download's time with it and 1.22x without); only if the bytes hash to
  the name and have the size the manifest says is it sealed and renamed into ``objects/``
  (``store.objects.Batch``), so
  nothing unverified ever enters the store and an interrupted download leaves only a temp file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from store.fs import fsops
from store.codec import decode, encode_canonical
from store.digest import Hasher, digest_bytes, is_digest
from store.errors import CorruptObjectError, ObjectMissingError
from store.layout import FANOUT, FORMAT_VERSION, HASH_NAME, FormatMarker
from store.objects import Batch, ObjectStore
from store.remote.backend import Backend, ObjectInfo
from store.remote.errors import RefExistsError, RemoteCorruptError, RemoteError, RemoteObjectMissingError

REF_LIMIT = 64 << 10  # a ref is a few hundred bytes
MANIFEST_LIMIT = 64 << 20  # a manifest of a model with a million tensors is far below this
FORMAT_LIMIT = 4 << 10
_CHUNK = 8 << 20


def object_key(digest: str) -> str:
    return f"objects/{digest[:FANOUT]}/{digest[FANOUT:]}"


def ref_key(name: str) -> str:
    return f"refs/{name}"


def largest_first(items: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """(digest, size) pairs, the biggest first (ties in digest order): a pool that takes them in
    this order does not end on one big blob moving alone while its other workers idle (the
    0.5B model's embedding is 27% of its bytes in one blob)."""
    return sorted(items, key=lambda item: (-item[1], item[0]))


class RemoteStore:
    def __init__(self, backend: Backend):
        self.backend = backend
        self.label = backend.label

    # --- FORMAT ---------------------------------------------------------------------------

    def check_format(self, *, create: bool = False) -> bool:
        """Refuse a remote of another format; with ``create``, write FORMAT if it has none.
        False when the remote has no FORMAT (is empty) and ``create`` is off."""
        got = self.backend.get("FORMAT", FORMAT_LIMIT)
        if got is None:
            if not create:
                return False
            marker = encode_canonical(FormatMarker(format=FORMAT_VERSION, hash=HASH_NAME)) + b"\n"
            try:
                self.backend.create("FORMAT", marker)
            except RefExistsError:
                pass
            got = self.backend.get("FORMAT", FORMAT_LIMIT)
            if got is None:
                raise RemoteObjectMissingError(self.label, "FORMAT", "format marker")
        try:
            marker = decode(got[0], FormatMarker)
        except Exception as e:  # msgspec errors: whatever the bytes are, they are not ours
            raise RemoteCorruptError(self.label, "FORMAT", f"not a modelstore FORMAT marker ({e})") from None
        if marker.format != FORMAT_VERSION or marker.hash != HASH_NAME:
            raise RemoteError(self.label, f"remote {self.label} has format {marker.format} ({marker.hash}); "
                              f"this modelstore reads format {FORMAT_VERSION} ({HASH_NAME})",
                              "use a remote of this format, or upgrade modelstore")
        return True

    # --- objects ---------------------------------------------------------------------------

    def holds(self, digest: str, size: int) -> bool:
        """True if the remote has the object with the right size (a wrong size is re-sent)."""
        info = self.backend.head(object_key(digest))
        return info is not None and info.size == size

    def upload(self, objects: ObjectStore, digest: str, size: int) -> None:
        """Send a local object, verifying its digest on the way (see module doc)."""
        path = objects.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ObjectMissingError(digest, path) from None
        with os.fdopen(fd, "rb") as f:
            if os.fstat(f.fileno()).st_size != size:
                raise CorruptObjectError(digest, path, None, f"its size is not {size}")
            self.backend.put(object_key(digest), _verified_chunks(f, digest, path), size)

    def download(self, objects: ObjectStore, digest: str, size: int) -> None:
        """Fetch one object into the local store, verified before it is published."""
        key = object_key(digest)
        hasher = Hasher(threaded=False)
        with Batch(objects) as batch:
            fd, tmp = objects.layout.new_temp("pull")
            try:
                def sink(chunk: memoryview | bytes) -> None:
                    hasher.update(chunk)
                    fsops.write_all(fd, chunk, tmp)
                    fsops.start_writeback(fd)  # the disk works while the next part arrives

                got = self.backend.download(key, sink, size)
                if got != size:
                    raise RemoteCorruptError(self.label, key, f"it has {got} bytes, not {size} (truncated?)")
                actual = hasher.hexdigest()
                if actual != digest:
                    raise RemoteCorruptError(self.label, key, f"its bytes hash to {actual[:12]}, not to its name")
            except BaseException:
                os.close(fd)
                fsops.unlink(tmp)
                raise
            batch.add(fd, tmp, digest, None, hashed_as_written=True)

    def get_verified(self, digest: str, limit: int = MANIFEST_LIMIT, what: str = "manifest") -> bytes:
        """A small object (a manifest) whole, hashed against its name."""
        if not is_digest(digest):
            raise RemoteCorruptError(self.label, digest, f"{what} name is not a BLAKE3 digest")
        key = object_key(digest)
        got = self.backend.get(key, limit)
        if got is None:
            raise RemoteObjectMissingError(self.label, key, what)
        actual = digest_bytes(got[0])
        if actual != digest:
            raise RemoteCorruptError(self.label, key, f"its bytes hash to {actual[:12]}, not to its name")
        return got[0]

    def list_objects(self) -> Iterator[ObjectInfo]:
        return self.backend.list("objects/")

    def delete_object(self, digest: str) -> None:
        self.backend.delete(object_key(digest))

    # --- refs ------------------------------------------------------------------------------

    def read_ref(self, name: str) -> tuple[bytes, str | None] | None:
        return self.backend.get(ref_key(name), REF_LIMIT)

    def create_ref(self, name: str, data: bytes) -> None:
        self.backend.create(ref_key(name), data)

    def replace_ref(self, name: str, data: bytes, etag: str) -> None:
        self.backend.replace(ref_key(name), data, etag)

    def delete_ref(self, name: str) -> None:
        self.backend.delete(ref_key(name))

    def ref_names(self) -> list[str]:
        return sorted(info.key[len("refs/"):] for info in self.backend.list("refs/"))


def _verified_chunks(f, digest: str, path: Path) -> Iterator[bytes]:
    """The file's bytes in chunks; the last chunk is held back until the digest matched, so
    an upload of a damaged object fails before the server can complete it."""
    hasher = Hasher(threaded=False)
    pending: bytes | None = None
    while chunk := f.read(_CHUNK):
        hasher.update(chunk)
        if pending is not None:
            yield pending
        pending = chunk
    actual = hasher.hexdigest()
    if actual != digest:
        raise CorruptObjectError(digest, path, actual)
    if pending is not None:
        yield pending
