"""The advisory writer lock, ``.modelstore/lock``.

Writers hold it around their commit (manifest check, view, registry replace) and gc holds
it while it deletes, so a registry read-modify-write is never lost and gc never collects
what an import is committing. Correctness never depends on it alone: every file is
replaced atomically, so with the lock disabled (``MODELSTORE_NO_LOCK=1``, used by the
reliability suite) concurrent writers can only duplicate work, never corrupt the store.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from store.fs import fsops
from store.layout import Layout


@contextmanager
def writer_lock(layout: Layout, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the store's exclusive lock; ``on_wait`` is called once if another writer has it."""
    if os.environ.get("MODELSTORE_NO_LOCK") == "1":
        yield
        return
    layout.create()  # the lock file lives in the store: never make a store without its FORMAT
    fd = fsops.open_lock_file(layout.lock_file)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
