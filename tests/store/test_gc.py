"""gc's store half: planning by reachability and age, and sweeping safely under races."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from store.fs import faults, fsops
from store.errors import UnsafePathError, UsageError
from store.gc import parse_duration, plan_gc, sweep
from store.layout import Layout
from store.objects import ObjectStore
from store.quarantine import list_quarantine, move_aside
from store.sourcecache import SourceCache

HOUR = 3600.0


@pytest.fixture
def store(root):
    layout = Layout(root)
    layout.create()
    return layout, ObjectStore(layout)


def age(path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when), follow_symlinks=False)


@pytest.mark.parametrize("text, seconds", [
    ("0", 0), ("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1w", 604800),
    ("1h30m", 5400), ("1.5h", 5400), (" 2H ", 7200),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "1y", "1h-", "one hour", "1,5h"])
def test_parse_duration_refuses(text):
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)


def test_plan_keeps_reachable_and_young_and_takes_old_unreachable(store):
    layout, objects = store
    kept = objects.put_bytes(b"reachable, and old")
    old = objects.put_bytes(b"unreachable and old")
    young = objects.put_bytes(b"unreachable but just written")
    for put in (kept, old):
        age(objects.path(put.digest), 2 * HOUR)
    plan = plan_gc(layout, {kept.digest}, HOUR)
    assert [d.digest for d in plan.objects] == [old.digest]
    assert [d.digest for d in plan.young] == [young.digest]
    assert plan.reachable == 1 and plan.bytes == old.size


def test_plan_takes_old_temp_files_and_folders_only(store):
    layout, _ = store
    stale_file = layout.tmp / "obj-1-aaaa.tmp"
    stale_file.write_bytes(b"x" * 10)
    stale_dir = layout.tmp / "gc-2-bbbb.tmp"
    stale_dir.mkdir()
    (stale_dir / "leftover").write_bytes(b"y" * 5)
    fresh = layout.tmp / "obj-3-cccc.tmp"
    fresh.write_bytes(b"being written")
    for path in (stale_file, stale_dir / "leftover", stale_dir):
        age(path, 2 * HOUR)
    plan = plan_gc(layout, set(), HOUR)
    assert [(d.path, d.size) for d in plan.temp] == [(stale_dir, 5), (stale_file, 10)]
    result = sweep(layout, plan)
    assert result.removed_temp == 2 and result.freed_bytes == 15
    assert sorted(p.name for p in layout.tmp.iterdir()) == [fresh.name]


def test_sweep_removes_what_was_planned_and_never_quarantine(store):
    layout, objects = store
    doomed = [objects.put_bytes(f"garbage {i}".encode()) for i in range(3)]
    corrupt = objects.put_bytes(b"set aside by --fix")
    move_aside(layout, objects.path(corrupt.digest), "objects", "test", digest=corrupt.digest)
    for put in doomed:
        age(objects.path(put.digest), 2 * HOUR)
    result = sweep(layout, plan_gc(layout, set(), HOUR))
    assert result.removed_objects == 3 and result.freed_bytes == sum(p.size for p in doomed)
    assert not any(objects.exists(p.digest) for p in doomed)
    assert [q.record.digest for q in list_quarantine(layout)] == [corrupt.digest]
    assert list(layout.tmp.iterdir()) == []  # gc's own staging folder is gone


def test_object_used_by_a_writer_after_the_plan_is_spared(store):
    """A writer that deduplicates against a doomed blob refreshes its mtime: gc gives it back."""
    layout, objects = store
    put = objects.put_bytes(b"old, unreachable, then needed again")
    age(objects.path(put.digest), 2 * HOUR)
    plan = plan_gc(layout, set(), HOUR)
    assert [d.digest for d in plan.objects] == [put.digest]
    assert objects.put_bytes(b"old, unreachable, then needed again").written is False  # touches it
    result = sweep(layout, plan)
    assert (result.removed_objects, result.spared) == (0, 1)
    assert objects.read_bytes(put.digest) == b"old, unreachable, then needed again"


def test_object_that_vanished_meanwhile_is_not_counted(store):
    layout, objects = store
    put = objects.put_bytes(b"removed by someone else")
    age(objects.path(put.digest), 2 * HOUR)
    plan = plan_gc(layout, set(), HOUR)
    os.unlink(objects.path(put.digest))
    result = sweep(layout, plan)
    assert (result.removed_objects, result.freed_bytes) == (0, 0)


def test_writer_finding_an_object_gone_writes_it_again(store, monkeypatch):
    """gc takes an object between a writer's size check and its touch: the writer rewrites it."""
    layout, objects = store
    put = objects.put_bytes(b"raced")
    original_touch = fsops.touch

    def gc_strikes(path):
        os.unlink(path)  # what a sweep's rename does to the object path, at the worst moment
        return original_touch(path)

    monkeypatch.setattr(fsops, "touch", gc_strikes)
    again = objects.put_bytes(b"raced")
    assert again.written and objects.read_bytes(put.digest) == b"raced"


def test_every_removal_goes_through_fsops(store, tmp_path, monkeypatch):
    layout, objects = store
    put = objects.put_bytes(b"counted")
    age(objects.path(put.digest), 2 * HOUR)
    stale = layout.tmp / "obj-9-dddd.tmp"
    stale.write_bytes(b"t")
    age(stale, 2 * HOUR)
    log = tmp_path / "fault.log"
    monkeypatch.setattr(faults, "plan", faults.FaultPlan("count", str(log)))
    sweep(layout, plan_gc(layout, set(), HOUR))
    steps = [line.split("\t")[1:] for line in log.read_text().splitlines()]
    ops = {(op, os.path.basename(path)) for op, path in steps}
    assert ("rename", put.digest) in ops and ("unlink", put.digest) in ops
    assert ("rmtree", stale.name) in ops


def remembered(layout, objects, folder):
    """A source record for ``folder`` (one small file in it), as an import leaves it."""
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_bytes(b"{}")
    cache = SourceCache(layout, objects, folder)
    cache.put_file("config.json", folder / "config.json")
    cache.save()
    return cache.path


def test_plan_takes_records_of_gone_folders_and_unreadable_ones(store, tmp_path):
    layout, objects = store
    kept = remembered(layout, objects, tmp_path / "still-here")
    gone = remembered(layout, objects, tmp_path / "removed")
    shutil.rmtree(tmp_path / "removed")
    damaged = layout.sources / ("0" * 64 + ".json")
    damaged.write_bytes(b"{not json")
    for path in (kept, gone, damaged):
        age(path, 2 * HOUR)
    plan = plan_gc(layout, set(), HOUR)
    assert [(r.path, r.folder) for r in plan.records] == [(damaged, None), (gone, str(tmp_path / "removed"))]
    assert plan.bytes == gone.stat().st_size + damaged.stat().st_size
    result = sweep(layout, plan)
    assert result.removed_records == 2 and result.freed_bytes == plan.bytes
    assert sorted(layout.sources.iterdir()) == [kept]


def test_young_record_of_a_gone_folder_is_kept(store, tmp_path):
    layout, objects = store
    remembered(layout, objects, tmp_path / "removed")
    shutil.rmtree(tmp_path / "removed")
    assert plan_gc(layout, set(), HOUR).records == []
    assert len(plan_gc(layout, set(), 0).records) == 1


def test_record_whose_folder_came_back_after_the_plan_is_kept(store, tmp_path):
    layout, objects = store
    record = remembered(layout, objects, tmp_path / "moved")
    shutil.rmtree(tmp_path / "moved")
    age(record, 2 * HOUR)
    plan = plan_gc(layout, set(), HOUR)
    assert [r.path for r in plan.records] == [record]
    (tmp_path / "moved").mkdir()  # restored from a backup while gc ran
    assert sweep(layout, plan).removed_records == 0
    assert record.exists()


def test_linked_sources_folder_is_refused(store, tmp_path):
    layout, objects = store
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ("1" * 64 + ".json")).write_bytes(b"not ours")
    os.rmdir(layout.sources) if layout.sources.is_dir() else None
    os.symlink(outside, layout.sources)
    with pytest.raises(UnsafePathError):
        plan_gc(layout, set(), 0)
    assert (outside / ("1" * 64 + ".json")).exists()
