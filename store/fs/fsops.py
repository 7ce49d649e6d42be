"""Every mutating filesystem operation of modelstore goes through this module.

Funnelling writes through one place gives three things:
- durability is applied uniformly (fsync of files and of the directories that name them,
  several at once, and early writeback: ``store.fs.durable``, whose names this module
  re-exports);
- a full disk surfaces as one ``StoreIOError`` naming ENOSPC and the path;
- the reliability suite can stop the process at the N-th mutating step (a crash), or fail
  it with ENOSPC there (``store.fs.faults``: every operation here counts one step first).

``enospc@N`` fails the real operation as the kernel does: a write (or kernel copy) puts part
of its bytes into the file, then ``OSError(ENOSPC)`` goes through the same ``except`` and
``_wrap`` as a real full disk's (other operations fail in place of their syscall). So the
error mapping and the cleanup of a half-written temp file run at every step of the sweep.

Nothing here follows a symlink when it removes or replaces (``unlink`` and ``rmtree`` act on
the link itself), nor acts *through* one: every operation refuses a path whose folder is a
symlink (``UnsafePathError``), since a link planted in the store's own folders (``tmp/``,
``objects/ab/``, ``quarantine/``) would redirect a write, rename or delete.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from store.fs.durable import fsync, fsync_dir, fsync_files, fsync_paths, start_writeback  # noqa: F401
from store.errors import UnsafePathError, disk_full_error as _wrap
from store.fs.faults import no_space as _no_space, step as _step

T = TypeVar("T")


def require_real_dir(path: Path) -> None:
    """Refuse ``path`` if it exists as a symlink or a non-directory (a planted link is never followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(path, f"is a symbolic link to {os.readlink(path)}")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(path, "should be a folder but is a file")


def _require_real_parent(path: os.PathLike | str) -> None:
    """Refuse to act on ``path`` when the folder holding it is a link: the act would land there."""
    require_real_dir(Path(path).parent)


def _counted(op: str, path: Path, call: Callable[[], T]) -> T:
    """``call()``, one mutating step ``op`` on ``path``: counted by the fault seam first (which
    may fail it with ENOSPC in its place), any ``OSError`` raised as a ``StoreIOError``."""
    fail = _step(op, path)
    try:
        if fail:
            raise _no_space(path)
        return call()
    except OSError as e:
        raise _wrap(path, e) from e


def mkdirs(path: Path) -> None:
    require_real_dir(path)
    if path.is_dir():
        return
    _counted("mkdir", path, lambda: path.mkdir(parents=True, exist_ok=True))


def create_temp(directory: Path, prefix: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """Create a new file no other writer can have: ``prefix-PID-RANDOM.tmp``, mode 0600."""
    mkdirs(directory)
    path = directory / f"{prefix}-{os.getpid()}-{_token()}{suffix}"
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    fd = _counted("create", path, lambda: os.open(path, flags, 0o600))
    return fd, path


def _token() -> str:
    """16 random hex digits for a temp name (``secrets.token_hex(8)``, without importing
    ``secrets``, whose hmac/hashlib/random imports cost a short command 5 ms)."""
    return os.urandom(8).hex()


def write_scratch(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` (new) holding ``data``, without fsync: for files inside a temp folder,
    thrown away after use (a crash leaves it to gc) or fsync'd by the caller before it is
    published (a view's generated files, with ``fsync_paths``)."""
    _require_real_parent(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    fd = _counted("create", path, lambda: os.open(path, flags, mode))
    try:
        write_all(fd, data, path)
    finally:
        os.close(fd)


def make_temp_dir(directory: Path, prefix: str) -> Path:
    mkdirs(directory)
    path = directory / f"{prefix}-{os.getpid()}-{_token()}.tmp"
    _counted("mkdir", path, lambda: path.mkdir(mode=0o755))
    return path


# Bytes per ``write``, so the largest folio a new file's page cache gets. Measured, a 1 GB
# local import right after a copy's pages were freed: one write per tensor 1.9-2.4 s, 512 KB
# writes 1.8-2.0 s, 256 KB 0.9-1.2 s (this VM hands freed 2 MB blocks back to its host).
WRITE_CHUNK = 256 << 10


def write_all(fd: int, data: bytes | memoryview, path: Path, at: int = 0) -> None:
    """Write all of ``data`` to ``fd``, one mutating step, in calls of at most ``WRITE_CHUNK``
    that end on ``WRITE_CHUNK`` boundaries of the file when ``at`` is the file offset the
    data starts at (each call then fills whole aligned folios)."""
    fail = _step("write", path)
    # Released on the way out, error or not: a view kept alive by an error's traceback would
    # make closing the caller's mmap fail with BufferError, hiding the real error.
    with memoryview(data) as view, view.cast("B") as whole:
        done = 0
        # A disk that fills up takes part of the data (a short write), then refuses the rest.
        fits = len(whole) // 2 if fail else len(whole)
        try:
            while done < fits:
                end = min(fits, done + WRITE_CHUNK - (at + done) % WRITE_CHUNK)
                with whole[done:end] as rest:
                    done += os.write(fd, rest)
            if fail:
                raise _no_space(path)
        except OSError as e:
            raise _wrap(path, e) from e


def truncate(fd: int, size: int, path: Path) -> None:
    """Cut (or extend) the open file ``fd`` to ``size`` bytes."""
    _counted("truncate", path, lambda: os.ftruncate(fd, size))


def copy_range(src_fd: int, dst_fd: int, offset: int, count: int, path: Path) -> None:
    """Append ``count`` bytes of ``src_fd`` from ``offset`` to ``dst_fd``, in the kernel.

    ``copy_file_range`` avoids copying through Python (and reflinks where the filesystem
    can); ``pread``/``write`` is the fallback where it is unsupported.
    """
    fail = _step("write", path)
    try:
        refused = count - count // 2 if fail else 0  # a full disk: half copied, then ENOSPC
        count -= refused
        while count:
            try:
                done = os.copy_file_range(src_fd, dst_fd, count, offset)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                done = _copy_by_read(src_fd, dst_fd, offset, count)
            if done == 0:
                raise OSError(errno.EIO, "source ended early", str(path))
            offset += done
            count -= done
        if refused:
            raise _no_space(path)
    except OSError as e:
        raise _wrap(path, e) from e


def _copy_by_read(src_fd: int, dst_fd: int, offset: int, count: int) -> int:
    chunk = os.pread(src_fd, min(count, 16 << 20), offset)
    view = memoryview(chunk)
    while view:
        view = view[os.write(dst_fd, view):]
    return len(chunk)


def rename(src: Path, dst: Path) -> None:
    """Atomically rename ``src`` onto ``dst`` (replacing a file, or an empty directory)."""
    _require_real_parent(src)
    _require_real_parent(dst)
    _counted("rename", dst, lambda: os.replace(src, dst))


def hardlink(src: Path, dst: Path) -> None:
    _require_real_parent(src)
    _require_real_parent(dst)
    _counted("link", dst, lambda: os.link(src, dst, follow_symlinks=False))


_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported.

    Used to replace a model's view directory with no instant at which it is missing.
    """
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    _require_real_parent(a)
    _require_real_parent(b)
    if _step("exchange", b):
        raise _wrap(b, _no_space(b))  # where renameat2's own ENOSPC would be raised
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise _wrap(b, OSError(err, os.strerror(err), str(b)))


def symlink(target: str, path: Path) -> None:
    _require_real_parent(path)
    _counted("symlink", path, lambda: os.symlink(target, path))


def unlink(path: Path, missing_ok: bool = True) -> None:
    _require_real_parent(path)
    fail = _step("unlink", path)
    try:
        if fail:
            raise _no_space(path)
        os.unlink(path)
    except FileNotFoundError:
        if not missing_ok:
            raise
    except OSError as e:
        raise _wrap(path, e) from e


def rmtree(path: Path) -> None:
    """Remove a directory tree without following symlinks (a link is removed, not entered).

    What is already gone is fine, at any depth: gc removes temp entries whose writer may
    rename or remove them at the same moment.
    """
    _require_real_parent(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    fail = _step("rmtree", path)
    try:
        if fail:
            raise _no_space(path)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)
            return
        # Read-only directories would stop the walk; our own trees are writable by the owner.
        import shutil

        shutil.rmtree(path, onerror=_unless_missing)
    except FileNotFoundError:
        return
    except OSError as e:
        raise _wrap(path, e) from e


def _unless_missing(function, path, exc_info) -> None:
    if not issubclass(exc_info[0], FileNotFoundError):
        raise exc_info[1]


def chmod(path: Path, mode: int) -> None:
    """Set a regular file's mode (repair re-seals objects 0444 with it); never a link's target."""
    _require_real_parent(path)
    if stat.S_ISLNK(os.lstat(path).st_mode):
        raise UnsafePathError(path, f"is a symbolic link to {os.readlink(path)}")
    _counted("chmod", path, lambda: os.chmod(path, mode))


def touch(path: Path) -> None:
    """Set a file's mtime to now, without following a symlink (gc's grace period uses it)."""
    _require_real_parent(path)
    _counted("utime", path, lambda: os.utime(path, follow_symlinks=False))


def touch_all(paths: list[Path]) -> list[Path]:
    """``touch`` each of ``paths``, checking each folder that holds them once, not once per
    file (a re-import refreshes 295 blobs in a few folders' worth of checks); returns the
    paths that were missing. A file of another user's is left as it is."""
    checked: set[Path] = set()
    missing = []
    for path in paths:
        if path.parent not in checked:
            require_real_dir(path.parent)
            checked.add(path.parent)
        fail = _step("utime", path)
        try:
            if fail:
                raise _no_space(path)
            os.utime(path, follow_symlinks=False)
        except FileNotFoundError:
            missing.append(path)
        except PermissionError:  # a store shared with other users: their objects stay as they are
            pass
        except OSError as e:
            raise _wrap(path, e) from e
    return missing


def open_lock_file(path: Path) -> int:
    """Open the writer lock's file read-write, creating it (a mutating step) if it is absent.

    O_NOFOLLOW: a lock file planted as a link must not create or open a file elsewhere.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _unsafe_or_wrapped(path, e) from None
    fail = _step("create", path)
    try:
        if fail:
            raise _no_space(path)
        return os.open(path, flags | os.O_CREAT, 0o644)
    except OSError as e:
        raise _unsafe_or_wrapped(path, e) from None


def _unsafe_or_wrapped(path: Path, error: OSError) -> OSError:
    if error.errno == errno.ELOOP:
        return UnsafePathError(path, f"is a symbolic link to {os.readlink(path)}")
    return _wrap(path, error)


def write_temp(tmp_dir: Path, prefix: str, data: bytes, mode: int = 0o644) -> Path:
    """A new temp file in ``tmp_dir`` holding ``data``, with ``mode``, fsync'd and closed:
    ready to be renamed into place. On any error nothing is left behind."""
    fd, tmp = create_temp(tmp_dir, prefix)
    try:
        write_all(fd, data, tmp)
        os.fchmod(fd, mode)
        fsync(fd, tmp)
    except BaseException:
        os.close(fd)
        unlink(tmp)
        raise
    os.close(fd)
    return tmp


def atomic_write(path: Path, data: bytes, tmp_dir: Path, mode: int = 0o644) -> None:
    """Write ``path`` so a reader sees the old bytes or the new ones, never a mix.

    Temp file in ``tmp_dir`` (same filesystem), fsync, rename over ``path``, fsync the
    directory.
    """
    tmp = write_temp(tmp_dir, path.name, data, mode)
    try:
        rename(tmp, path)
    except BaseException:
        unlink(tmp)
        raise
    fsync_dir(path.parent)
