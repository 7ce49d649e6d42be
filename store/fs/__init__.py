"""The filesystem under the store: every mutating operation (fsops), its durability (durable:
fsync, several at once, and early writeback), the reliability suite's fault seam (faults)
and the writer lock (lock).

Every write of modelstore goes through ``fsops``, which refuses to act through a planted
symlink and maps a full disk to one ``StoreIOError``. It may import only the standard
library, ``store.errors`` and (the lock's path) ``store.layout``.
"""
