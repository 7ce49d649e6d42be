"""A ``file:///path`` remote: the same layout as an S3 remote, in a folder (a mounted share,
a USB disk, another store's neighbour).

Immutable objects are written to a unique temp file under ``<root>/tmp/``, fsync'd and renamed
into place. Refs get S3's conditional-write guarantee from the filesystem: ``create`` links
a finished temp file to the ref's name (``os.link`` fails if the name exists: If-None-Match:
*), and ``replace`` holds an exclusive ``flock`` on ``refs/.NAME.lock`` while it compares the
ref's etag (the BLAKE3 digest of its bytes) and renames the new ref over it (If-Match). A
process killed while holding the lock releases it with its descriptor. Readers never lock:
every ref they see is a whole file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from store.digest import digest_bytes
from store.remote.backend import Backend, ObjectInfo, check_key
from store.remote.errors import RefExistsError, RefMovedError, RemoteCorruptError, RemoteIOError

_CHUNK = 8 << 20


class FileBackend(Backend):
    def __init__(self, label: str, root: str):
        self.label = label
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _io(self, key: str, e: OSError) -> RemoteIOError:
        return RemoteIOError(self.label, key, e.strerror or str(e))

    def head(self, key: str) -> ObjectInfo | None:
        try:
            st = os.stat(self._path(key))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._io(key, e) from e
        etag = None
        if key.startswith(("refs/", "locks/")):
            got = self.get(key, 1 << 20)
            etag = got[1] if got else None
        return ObjectInfo(key, st.st_size, etag, st.st_mtime)

    def get(self, key: str, limit: int) -> tuple[bytes, str | None] | None:
        try:
            with open(self._path(key), "rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._io(key, e) from e
        if len(data) > limit:
            raise RemoteCorruptError(self.label, key, f"it is larger than {limit} bytes")
        return data, digest_bytes(data)

    def download(self, key: str, sink: Callable[[memoryview | bytes], None], limit: int) -> int:
        total = 0
        try:
            with open(self._path(key), "rb") as f:
                while chunk := f.read(min(_CHUNK, limit - total + 1)):
                    total += len(chunk)
                    if total > limit:
                        raise RemoteCorruptError(self.label, key, f"it is larger than {limit} bytes")
                    sink(chunk)
        except FileNotFoundError:
            from store.remote.errors import RemoteObjectMissingError

            raise RemoteObjectMissingError(self.label, key) from None
        except OSError as e:
            raise self._io(key, e) from e
        return total

    @contextmanager
    def _temp(self, key: str, chunks: Iterable[bytes | memoryview]) -> Iterator[Path]:
        """A finished, fsync'd temp file holding ``chunks``; removed on the way out."""
        tmp_dir = self.root / "tmp"
        tmp = tmp_dir / f"{key.replace('/', '_')}-{os.getpid()}-{secrets.token_hex(6)}.tmp"
        try:
            os.makedirs(tmp_dir, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            yield tmp
        except OSError as e:
            raise self._io(key, e) from e
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    def _fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def put(self, key: str, chunks: Iterable[bytes | memoryview], size: int) -> None:
        final = self._path(key)
        with self._temp(key, chunks) as tmp:
            os.makedirs(final.parent, exist_ok=True)
            os.rename(tmp, final)
            self._fsync_dir(final.parent)

    def create(self, key: str, data: bytes) -> str | None:
        final = self._path(key)
        with self._temp(key, [data]) as tmp:
            os.makedirs(final.parent, exist_ok=True)
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise RefExistsError(self.label, key) from None
            self._fsync_dir(final.parent)
        return digest_bytes(data)

    def replace(self, key: str, data: bytes, etag: str) -> str | None:
        final = self._path(key)
        lock = final.parent / f".{final.name}.lock"
        with self._temp(key, [data]) as tmp:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                current = self.get(key, 1 << 20)
                if current is None or current[1] != etag:
                    raise RefMovedError(self.label, key)
                os.rename(tmp, final)
                self._fsync_dir(final.parent)
            finally:
                os.close(fd)
        return digest_bytes(data)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        top = self.root / prefix
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                key = path.relative_to(self.root).as_posix()
                try:
                    check_key(key)
                    st = os.stat(path)
                except (ValueError, FileNotFoundError):
                    continue  # lock files, strays: not objects of the remote
                yield ObjectInfo(key, st.st_size, None, st.st_mtime)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise self._io(key, e) from e
