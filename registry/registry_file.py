"""``models/registry.json``: name -> manifest digest + summary, the store's only mutable index.

Writes are atomic (temp file, fsync, rename, fsync the directory) and keep the previous
generation as ``registry.json.prev`` for recovery. Reads are strict: a file that is not
valid JSON, repeats a key, has unknown fields or a newer schema is reported as damaged,
never half-read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from store.fs import fsops
from store.codec import DuplicateKeyError, Record, check_no_duplicate_keys, decode, encode_pretty
from store.digest import is_digest
from registry.errors import RegistryError
from store.errors import StoreIOError
from store.manifest import Source

SCHEMA_VERSION = 1


class RegistryEntry(Record):
    model_name: str
    model_id: str
    architecture_type: str
    local_path: str  # the view, relative to the workspace root: models/<name>
    source: Source
    created_at: str
    manifest: str  # digest of the model version's manifest
    fine_tuned_from: str | None = None
    metadata: dict[str, Any] = {}


class RegistryDoc(Record):
    schema_version: int
    models: dict[str, RegistryEntry] = {}


def empty_registry() -> RegistryDoc:
    return RegistryDoc(schema_version=SCHEMA_VERSION, models={})


def parse_registry(path: Path, data: bytes) -> RegistryDoc:
    """Decode registry bytes, refusing anything short of a well-formed registry."""
    if not data.strip():
        raise RegistryError(path, "the file is empty")
    try:
        check_no_duplicate_keys(data)
    except DuplicateKeyError as e:
        raise RegistryError(path, f"duplicate key {e.key!r} (a name registered twice?)") from None
    except ValueError as e:
        raise RegistryError(path, f"not valid JSON ({e})") from None
    try:
        version = msgspec.json.decode(data, type=dict).get("schema_version")
    except msgspec.ValidationError:  # (a subclass of DecodeError, so it comes first)
        raise RegistryError(path, "the top level is not a JSON object") from None
    except msgspec.DecodeError as e:
        raise RegistryError(path, f"not valid JSON ({e})") from None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise RegistryError(
            path,
            f"schema version {version} is newer than this modelstore reads ({SCHEMA_VERSION})",
            "upgrade modelstore to use this store",
        )
    try:
        doc = decode(data, RegistryDoc)
    except msgspec.ValidationError as e:
        raise RegistryError(path, str(e)) from None
    if doc.schema_version != SCHEMA_VERSION:
        raise RegistryError(path, f"unknown schema version {doc.schema_version}")
    for name, entry in doc.models.items():
        if entry.model_name != name:
            raise RegistryError(path, f"entry {name!r} names itself {entry.model_name!r}")
        if not is_digest(entry.manifest):
            raise RegistryError(path, f"entry {name!r} has an invalid manifest digest {entry.manifest!r}")
    return doc


def read_registry(path: Path) -> RegistryDoc:
    """The registry at ``path``; an absent file is an empty registry."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return empty_registry()
    return parse_registry(path, data)


def encode_registry(doc: RegistryDoc) -> bytes:
    ordered = RegistryDoc(schema_version=doc.schema_version, models=dict(sorted(doc.models.items())))
    return encode_pretty(ordered)


def write_registry(doc: RegistryDoc, path: Path, tmp_dir: Path) -> None:
    """Replace the registry atomically; the replaced file becomes ``registry.json.prev``."""
    tmp = fsops.write_temp(tmp_dir, "registry", encode_registry(doc))
    try:
        fsops.mkdirs(path.parent)
        _keep_previous(path, tmp_dir)
        fsops.rename(tmp, path)  # the commit point of every registry change
    except BaseException:
        fsops.unlink(tmp)  # a failed write leaves no temp file behind
        raise
    try:
        fsops.fsync_dir(path.parent)
    except StoreIOError as e:  # after the commit: say so, and let nobody roll back
        raise e.after_commit() from e


def previous_path(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def _keep_previous(path: Path, tmp_dir: Path) -> None:
    """Hard-link the current registry to a temp name, then rename it to ``.prev``.

    Only a registry that parses is kept: a damaged file must not replace a good previous
    generation, which is what recovery falls back on.
    """
    try:
        parse_registry(path, path.read_bytes())
    except (FileNotFoundError, RegistryError):
        return
    link = tmp_dir / f"registry-prev-{os.getpid()}-{os.urandom(4).hex()}.tmp"
    try:
        fsops.hardlink(path, link)
    except FileNotFoundError:
        return
    try:
        fsops.rename(link, previous_path(path))
    except BaseException:
        fsops.unlink(link)
        raise
    if os.path.lexists(link):
        # rename() of a file onto another link to the same inode does nothing and succeeds:
        # two writers without the lock keeping the same generation. The link is debris.
        fsops.unlink(link)
