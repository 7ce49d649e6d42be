"""The store layer: objects, hashing, manifests, atomic writes, gc. No torch, no names."""

from store.layout import Layout
from store.objects import ObjectStore

__all__ = ["Layout", "ObjectStore"]
