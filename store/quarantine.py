"""``.modelstore/quarantine/``: where repair moves what it takes out of service.

Nothing repair removes is deleted: corrupt objects, damaged registry files, orphan model
directories and stray files found in views are moved here, each in its own folder with a
``record.json`` that says what it was, where it lived, why it was moved and which models
it concerned:

    quarantine/objects/20250101T120000Z-1a2b3c4d5e6f-9f8e7d/1a2b3c...   (the bytes)
    quarantine/objects/20250101T120000Z-1a2b3c4d5e6f-9f8e7d/record.json
    quarantine/orphans/20250101T120000Z-old-model-4c5d6e/old-model/
    quarantine/registry/20250101T120000Z-registry.json-0a1b2c/registry.json
    quarantine/lost/20250101T120000Z-5e6f7a8b9c0d-1d2e3f/record.json   (gone, not restorable)

Moves are renames within the workspace's filesystem, so they are atomic and cost no copy.
The user deletes quarantine folders when they no longer need them; gc never touches them.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from store.fs import fsops
from store.codec import Record, decode, encode_pretty
from store.layout import Layout
from store.manifest import now_iso

Kind = Literal["objects", "orphans", "registry", "view-files", "lost"]
RECORD_FILENAME = "record.json"


class QuarantineRecord(Record):
    kind: Kind
    original: str  # where it lived, relative to the workspace root
    moved_at: str  # UTC, ISO 8601
    reason: str
    digest: str | None = None  # for objects: the name its bytes should hash to
    actual: str | None = None  # for objects: what they hashed to, when known
    size: int | None = None
    models: list[str] = []


@dataclass(frozen=True)
class QuarantinedItem:
    folder: Path
    record: QuarantineRecord
    size: int  # bytes held, files of a moved folder included


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _new_folder(layout: Layout, kind: Kind, label: str) -> Path:
    # Each level is checked: mkdirs alone would create the new folder through a linked
    # quarantine/ or quarantine/<kind>/, i.e. outside the store.
    fsops.mkdirs(layout.quarantine)
    fsops.mkdirs(layout.quarantine / kind)
    folder = layout.quarantine / kind / f"{_stamp()}-{label[:80]}-{os.urandom(3).hex()}"
    fsops.mkdirs(folder)
    return folder


def move_aside(layout: Layout, path: Path, kind: Kind, reason: str, *, label: str | None = None,
               digest: str | None = None, actual: str | None = None,
               models: list[str] | None = None) -> Path:
    """Move ``path`` (a file, link or folder) into a new quarantine folder, with its record.

    An object keeps its full digest as its file name there; anything else its own name.

    The record is written first, so a crash leaves at worst a record beside an item that
    was never moved (still in place, still reported by validation).
    """
    fsops.require_real_dir(path.parent)  # before the record: nothing is moved out of a linked folder
    folder = _new_folder(layout, kind, label or path.name)
    record = QuarantineRecord(
        kind=kind, original=_relative(layout, path), moved_at=now_iso(), reason=reason,
        digest=digest, actual=actual, size=_size(path), models=sorted(models or []),
    )
    fsops.atomic_write(folder / RECORD_FILENAME, encode_pretty(record), layout.tmp)
    dest = folder / (digest if kind == "objects" and digest else path.name)
    fsops.rename(path, dest)
    fsops.fsync_dir(path.parent)
    fsops.fsync_dir(folder)
    return dest


def keep_copy(layout: Layout, path: Path, kind: Kind, reason: str) -> Path:
    """Keep the current bytes of ``path`` in quarantine (a hard link) before it is replaced."""
    fsops.require_real_dir(path.parent)
    folder = _new_folder(layout, kind, path.name)
    record = QuarantineRecord(kind=kind, original=_relative(layout, path), moved_at=now_iso(),
                              reason=reason, size=_size(path))
    fsops.atomic_write(folder / RECORD_FILENAME, encode_pretty(record), layout.tmp)
    dest = folder / path.name
    fsops.hardlink(path, dest)
    fsops.fsync_dir(folder)
    return dest


def record_lost(layout: Layout, digest: str, reason: str, models: list[str]) -> Path:
    """Record an object that is gone and cannot be restored (nothing to move: a record only).

    gc and validation read these records: a lineage manifest recorded lost is history that
    is known to be gone, not a reason to stop.
    """
    folder = _new_folder(layout, "lost", digest[:12])
    record = QuarantineRecord(kind="lost", original=_relative(layout, layout.object_path(digest)),
                              moved_at=now_iso(), reason=reason, digest=digest, models=sorted(models))
    fsops.atomic_write(folder / RECORD_FILENAME, encode_pretty(record), layout.tmp)
    return folder


def quarantined_digests(layout: Layout) -> set[str]:
    """Digests of every object moved to quarantine or recorded lost."""
    return {item.record.digest for item in list_quarantine(layout) if item.record.digest}


def list_quarantine(layout: Layout) -> list[QuarantinedItem]:
    """Every quarantined item with its record; folders whose record is unreadable are skipped."""
    items = []
    if not layout.quarantine.is_dir():
        return items
    for kind_dir in sorted(layout.quarantine.iterdir()):
        if not kind_dir.is_dir() or kind_dir.is_symlink():
            continue
        for folder in sorted(kind_dir.iterdir()):
            try:
                record = decode((folder / RECORD_FILENAME).read_bytes(), QuarantineRecord)
            except (OSError, msgspec.DecodeError, msgspec.ValidationError):
                continue
            held = sum(_size(p) for p in folder.iterdir() if p.name != RECORD_FILENAME)
            items.append(QuarantinedItem(folder, record, held))
    return items


def _size(path: Path) -> int:
    """Bytes of a file, or of every regular file under a folder (links count as nothing)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            child = os.lstat(os.path.join(dirpath, name))
            total += child.st_size if stat.S_ISREG(child.st_mode) else 0
    return total


def _relative(layout: Layout, path: Path) -> str:
    try:
        return str(Path(path).absolute().relative_to(layout.root))
    except ValueError:
        return str(path)

