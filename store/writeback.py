"""Starting the disk writeback of a file's dirty pages early, so a final fsync waits less.

``sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE)`` asks the kernel to begin
writing a range out without waiting for it. A writer of a large file calls it behind itself
every few tens of MB: the disk works while the copy goes on, instead of after it, as
``cp && sync`` leaves it. It is only a hint: where the call does not exist (not Linux, no
libc), nothing happens and the final fsync does all the work, as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util

SYNC_FILE_RANGE_WRITE = 2
STEP = 32 << 20  # bytes written between two hints

try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _sync_file_range = _libc.sync_file_range
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
except (OSError, AttributeError):
    _sync_file_range = None


class Writeback:
    """Tracks how far a file was written and starts its writeback every ``STEP`` bytes."""

    def __init__(self, fd: int):
        self.fd, self.started = fd, 0

    def wrote(self, end: int) -> None:
        """The file is written up to ``end``."""
        if _sync_file_range is not None and end - self.started >= STEP:
            _sync_file_range(self.fd, self.started, end - self.started, SYNC_FILE_RANGE_WRITE)
            self.started = end
