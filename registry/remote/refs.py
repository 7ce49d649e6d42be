"""What a ref on a remote holds, and how it is read: strictly, as everything from a remote.

``refs/<name>`` = ``{"manifest": digest, "model_id", "architecture_type", "source",
"created_at", "pushed_at", "pushed_by", "fine_tuned_from"}`` (canonical JSON). The summary
fields let ``list-models --remote`` show a remote without reading any manifest.
"""

from __future__ import annotations

import getpass
import socket

import msgspec

from registry.names import name_problem
from registry.remote.errors import RemoteRefError
from store.codec import Record, decode, encode_canonical
from store.digest import is_digest
from store.manifest import Source

REF_FORMAT = 1


class Ref(Record, omit_defaults=True):
    manifest: str
    model_id: str
    architecture_type: str
    source: Source
    created_at: str
    pushed_at: str
    pushed_by: str
    fine_tuned_from: str | None = None
    format: int = REF_FORMAT


def encode_ref(ref: Ref) -> bytes:
    return encode_canonical(ref) + b"\n"


def decode_ref(remote: str, name: str, data: bytes) -> Ref:
    try:
        ref = decode(data, Ref)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise RemoteRefError(remote, name, f"not a ref ({e})") from None
    if ref.format != REF_FORMAT:
        raise RemoteRefError(remote, name, f"ref format {ref.format} is not {REF_FORMAT}")
    if not is_digest(ref.manifest):
        raise RemoteRefError(remote, name, "its manifest is not a BLAKE3 digest")
    if ref.fine_tuned_from is not None and name_problem(ref.fine_tuned_from):
        raise RemoteRefError(remote, name, "its fine_tuned_from is not a model name")
    for field in ("model_id", "architecture_type", "pushed_by", "created_at", "pushed_at"):
        value = getattr(ref, field)
        if len(value) > 300 or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise RemoteRefError(remote, name, f"its {field} holds control characters or is too long")
    return ref


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
