"""The store layer: objects, hashing, manifests, atomic writes, gc. No torch, no names.

Rooms: ``fs/`` (every mutating filesystem operation, durability, the fault seam, the
lock), ``tensors/`` (safetensors headers and splitting files and downloads into tensor
blobs), ``remote/`` (remotes' object I/O). The modules at the top hold the on-disk
format (layout, codec, manifest, digest), the objects and their upkeep (verify, gc,
quarantine, sourcecache)."""

from store.layout import Layout
from store.objects import ObjectStore

__all__ = ["Layout", "ObjectStore"]
