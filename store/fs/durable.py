"""Durability: fsync of files and folders (several at once), and early writeback.

Part of ``store.fs.fsops`` (which re-exports these names: callers use ``fsops.fsync``): each
operation counts one step at the fault seam (``store.fs.faults``) and maps a full disk to
``StoreIOError``, as every operation there does. Apart because the parallel fsync and the
``sync_file_range`` lookup are a job of their own.

It may import only the standard library, ``store.errors`` and ``store.fs.faults``.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

from store.errors import disk_full_error as _wrap
from store.fs.faults import no_space as _no_space, step as _step

_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range():
    """libc's sync_file_range, or None; looked up on first use (ctypes costs a command that
    writes nothing 2 ms to import)."""
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint)
    return function


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing ``fd``'s dirty pages now, without waiting.

    Not a durability step (the fsync that follows is): it lets the disk work while the next
    file is being written, so the later fsync finds little left to do.
    """
    function = _sync_file_range()
    if function is not None:
        function(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def fsync(fd: int, path: Path) -> None:
    fail = _step("fsync", path)
    try:
        if fail:
            raise _no_space(path)
        os.fsync(fd)
    except OSError as e:
        raise _wrap(path, e) from e


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    _fsync_path(path, os.O_DIRECTORY)


def fsync_files(files: list[tuple[int, Path]]) -> None:
    """``fsync`` every open file of ``files`` ((fd, path) pairs), several at once."""
    _all_at_once(lambda item: fsync(*item), files)


def fsync_paths(paths: list[Path]) -> None:
    """fsync every file or folder of ``paths`` (a folder: its entries' creations, renames
    and removals), several at once."""
    _all_at_once(_fsync_path, paths)


def _fsync_path(path: Path, flags: int = os.O_NOFOLLOW) -> None:
    fail = _step("fsync", path)
    try:
        if fail:
            raise _no_space(path)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise _wrap(path, e) from e


_FSYNC_THREADS = 8


def _all_at_once(fsync_one, items: list) -> None:
    """``fsync_one(item)`` for every item, from a few threads at once: each fsync ends in a
    flush of the disk's cache, and flushes issued together are merged by the block layer,
    where one after another each waits for its own (a 1 GB import: 295 blobs in up to 256
    fan-out folders, 0.4 s of fsyncs in a row; a view: 2 files and its folder). Every one has
    completed when this returns; an error from any of them is raised once all have finished."""
    if len(items) < 2:
        for item in items:
            fsync_one(item)
        return
    # Plain threads, not concurrent.futures: its import (with logging) would cost a short
    # command (a re-import: 3 fsyncs at once) more than the threads save.
    queue = list(reversed(items))
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            try:
                item = queue.pop()
            except IndexError:
                return
            try:
                fsync_one(item)
            except BaseException as e:  # re-raised below, once every fsync has finished
                errors.append(e)

    threads = [threading.Thread(target=work, name="modelstore-fsync", daemon=True)
               for _ in range(min(len(items), _FSYNC_THREADS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
