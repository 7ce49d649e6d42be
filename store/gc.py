"""gc's store half: which objects and temp files can go, and removing them safely.

What is reachable is the registry's business (``registry.space.gc`` works it out from the
registered manifests and their lineage); this module gets the set of digests to keep and:

- plans: every object not in that set, every temp file, and every source record of a folder
  that is gone (``store.sourcecache.stale_records``), older than the grace period;
  younger ones are kept, since an import in flight writes blobs before its manifest and
  registry entry exist (and refreshes the mtime of any blob it deduplicates against);
- sweeps, with the writer lock held by the caller: each doomed object is first renamed out
  of ``objects/`` into a private folder under ``tmp/``, *then* its mtime is looked at
  again. A writer that deduplicated against it after the plan was made has refreshed that
  mtime, and the object is put back; a writer that looks after the rename sees it missing
  and writes it again. So gc never takes a blob an import is about to reference.

Quarantine (``store.quarantine``): an item --fix set aside more than the grace period ago
is removed too, except what its record says: a record of an object recorded lost stays (it
is how gc and validation know that history is gone), and so does the record of a
quarantined object that nothing restored (the bytes go, the record of their digest stays).

Every removal goes through ``store.fs.fsops``.
"""

from __future__ import annotations

import os
import calendar
import re
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from store.fs import fsops
from store.errors import UsageError
from store.layout import Layout
from store.objects import ObjectStore
from store.quarantine import RECORD_FILENAME, QuarantinedItem, list_quarantine
from store.sourcecache import folder_exists, stale_records
from store.verify import inventory

DEFAULT_GRACE_S = 3600.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``90``, ``90s``, ``30m``, ``1h``, ``2d``, ``1h30m``."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise UsageError(f"invalid duration {text!r}", "use e.g. 0, 90s, 30m, 1h or 2d")
    return float(sum(float(n) * _UNITS[u or "s"] for n, u in parts))


@dataclass(frozen=True)
class Doomed:
    path: Path
    size: int
    age_s: float
    digest: str | None = None  # objects only


@dataclass(frozen=True)
class DoomedRecord:
    """A source record (``store.sourcecache``) no import can use any more."""

    path: Path
    size: int
    age_s: float
    folder: str | None  # the folder it remembered, now gone; None when it cannot be read


@dataclass(frozen=True)
class DoomedQuarantine:
    """A quarantine folder whose contents go (``keep_record``: all but its record.json)."""

    path: Path
    size: int
    age_s: float
    keep_record: bool


@dataclass
class GcPlan:
    grace_s: float
    reachable: int  # objects kept because something reaches them
    objects: list[Doomed] = field(default_factory=list)  # unreachable and older than grace
    temp: list[Doomed] = field(default_factory=list)  # temp files and folders older than grace
    records: list[DoomedRecord] = field(default_factory=list)  # of folders that are gone, or unreadable
    young: list[Doomed] = field(default_factory=list)  # unreachable but within grace: kept
    quarantine: list[DoomedQuarantine] = field(default_factory=list)  # set aside by --fix, older than grace

    @property
    def bytes(self) -> int:
        return sum(d.size for d in self.objects + self.temp + self.records + self.quarantine)

    @property
    def empty(self) -> bool:
        return not self.objects and not self.temp and not self.records and not self.quarantine


@dataclass
class GcResult:
    removed_objects: int = 0
    removed_temp: int = 0
    removed_records: int = 0
    freed_bytes: int = 0
    spared: int = 0  # planned, but touched by a writer since: kept
    removed_quarantine: int = 0


def plan_gc(layout: Layout, keep: set[str], grace_s: float, *, extra_temp: Iterable[Path] = (),
            now: float | None = None) -> GcPlan:
    """What a sweep would remove: unreachable objects and temp entries older than ``grace_s``.

    ``extra_temp`` adds temp entries that live outside ``.modelstore/tmp`` (the registry's
    half-built or half-removed views under ``models/``).
    """
    layout.require_no_links()  # objects/ or tmp/ as a link would list (and doom) files outside
    now = time.time() if now is None else now
    plan = GcPlan(grace_s=grace_s, reachable=0)
    for obj in inventory(ObjectStore(layout)):
        if obj.digest in keep:
            plan.reachable += 1
            continue
        doomed = Doomed(obj.path, obj.size, now - obj.mtime, obj.digest)
        (plan.objects if doomed.age_s >= grace_s else plan.young).append(doomed)
    temp_entries = list(layout.tmp.iterdir()) if layout.tmp.is_dir() else []
    for path in [*temp_entries, *extra_temp]:
        size, mtime = _footprint(path)
        if mtime is not None and now - mtime >= grace_s:
            plan.temp.append(Doomed(path, size, now - mtime))
    for path, folder in stale_records(layout):
        size, mtime = _footprint(path)
        if mtime is not None and now - mtime >= grace_s:
            plan.records.append(DoomedRecord(path, size, now - mtime, folder))
    objects = ObjectStore(layout)
    for item in list_quarantine(layout):
        if item.record.kind == "lost":
            continue  # a record only, and the proof that a lineage manifest is gone
        age = now - _moved_at(item)
        if age >= grace_s:
            digest = item.record.digest
            keep_record = item.record.kind == "objects" and bool(digest) and not objects.exists(digest)
            plan.quarantine.append(DoomedQuarantine(item.folder, item.size, age, keep_record))
    plan.objects.sort(key=lambda d: d.digest or "")
    plan.temp.sort(key=lambda d: str(d.path))
    return plan


def _moved_at(item: QuarantinedItem) -> float:
    try:
        return float(calendar.timegm(time.strptime(item.record.moved_at, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return item.folder.stat().st_mtime


def sweep(layout: Layout, plan: GcPlan, on_bytes: Callable[[int], None] | None = None) -> GcResult:
    """Remove what ``plan`` lists, re-checking each age first. The caller holds the lock.

    ``on_bytes(n)``: told the size of each object handled (a progress bar)."""
    result = GcResult()
    staging: Path | None = None
    try:
        for doomed in plan.objects:
            if staging is None:
                staging = fsops.make_temp_dir(layout.tmp, "gc")
            if _remove_object(doomed, staging, plan.grace_s):
                result.removed_objects += 1
                result.freed_bytes += doomed.size
            else:
                result.spared += 1
            if on_bytes is not None:
                on_bytes(doomed.size)
        for doomed in plan.temp:
            size, mtime = _footprint(doomed.path)
            if mtime is None or time.time() - mtime < plan.grace_s:
                continue  # gone already, or written to since the plan: in use
            fsops.rmtree(doomed.path)
            result.removed_temp += 1
            result.freed_bytes += size
        for doomed in plan.records:
            if _record_in_use(doomed, plan.grace_s):
                continue
            fsops.unlink(doomed.path)
            result.removed_records += 1
            result.freed_bytes += doomed.size
        for doomed in plan.quarantine:
            if not doomed.path.is_dir() or doomed.path.is_symlink():
                continue
            if doomed.keep_record:
                for child in sorted(doomed.path.iterdir()):
                    if child.name == RECORD_FILENAME:
                        continue
                    if child.is_dir() and not child.is_symlink():
                        fsops.rmtree(child)
                    else:
                        fsops.unlink(child)
                fsops.fsync_dir(doomed.path)
            else:
                fsops.rmtree(doomed.path)
            result.removed_quarantine += 1
            result.freed_bytes += doomed.size
    finally:
        if staging is not None:
            fsops.rmtree(staging)
    return result


def _remove_object(doomed: Doomed, staging: Path, grace_s: float) -> bool:
    moved = staging / (doomed.digest or doomed.path.name)
    try:
        fsops.rename(doomed.path, moved)
    except FileNotFoundError:
        return False  # someone else removed it
    # The object is out of reach now; a writer that touched it before the rename is seen here.
    if time.time() - os.lstat(moved).st_mtime < grace_s:
        if not os.path.lexists(doomed.path):
            fsops.rename(moved, doomed.path)
        return False
    fsops.unlink(moved)
    return True


def _record_in_use(doomed: DoomedRecord, grace_s: float) -> bool:
    """True if the record is gone already, or was rewritten since the plan (its folder is
    back and was imported again): then it stays as it is."""
    _, mtime = _footprint(doomed.path)
    if mtime is None or time.time() - mtime < grace_s:
        return True
    return doomed.folder is not None and folder_exists(doomed.folder)


def _footprint(path: Path) -> tuple[int, float | None]:
    """(bytes, newest mtime) of a file or folder; (0, None) if it is gone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0, None
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size, st.st_mtime
    size, newest = 0, st.st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                child = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            newest = max(newest, child.st_mtime)
            if stat.S_ISREG(child.st_mode):
                size += child.st_size
    return size, newest
