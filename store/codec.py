"""The policy for everything modelstore persists as JSON, in one place.

Every persisted record is a ``Record``: unknown fields are refused (a newer writer's file is
not silently half-read), and the canonical encoding sorts keys and
has no whitespace, so equal records always give equal bytes (and, for manifests, the same
digest). Human-facing files (metadata.json) use ``encode_pretty``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


class Record(msgspec.Struct, forbid_unknown_fields=True):
    """Base of every persisted struct (subclasses inherit the unknown-field policy)."""


_canonical = msgspec.json.Encoder(order="sorted")
_decoders: dict[Any, msgspec.json.Decoder] = {}


def encode_canonical(obj: Any) -> bytes:
    """Compact JSON with sorted keys: the bytes whose digest names a manifest."""
    return _canonical.encode(obj)


def encode_pretty(obj: Any) -> bytes:
    """Indented JSON for files people read; keys keep the order they were given in."""
    return json.dumps(msgspec.to_builtins(obj), indent=2, ensure_ascii=False).encode() + b"\n"


def decode(data: bytes, type_: type[T]) -> T:
    """Decode ``data`` as ``type_``; raises ``msgspec.ValidationError``/``DecodeError``."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    return decoder.decode(data)


class DuplicateKeyError(ValueError):
    def __init__(self, key: str):
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def check_no_duplicate_keys(data: bytes) -> None:
    """Raise ``DuplicateKeyError`` if any JSON object in ``data`` repeats a key.

    JSON parsers keep the last of repeated keys silently; for the registry that would hide
    a damaged or hand-edited file, so duplicates are an error.
    """
    json.loads(data, object_pairs_hook=no_duplicate_keys)


def no_duplicate_keys(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s ``object_pairs_hook`` that raises ``DuplicateKeyError`` on a repeated key."""
    seen: dict[str, Any] = {}
    for key, value in items:
        if key in seen:
            raise DuplicateKeyError(key)
        seen[key] = value
    return seen
