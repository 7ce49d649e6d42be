"""gc over a workspace: what the registry reaches stays, everything else goes after a grace
period, and nothing goes at all when reachability cannot be known."""

from __future__ import annotations

import os
import time

import pytest

import registry.ingest.folder
from registry.ops import delete_model
from registry.space.gc import collect_garbage
from registry.lineage import lineage
from registry.check.validate import validate
from registry.errors import GcAbortedError, RegistryError
from store.errors import ObjectMissingError
from store.quarantine import list_quarantine, move_aside
from tests.registry.breakage import (
    EXCLUSIVE, flip_bit, register_child, two_models, workspace_state,
)

HOUR = 3600.0


@pytest.fixture
def s(workspace, tiny_model):
    return two_models(workspace, tiny_model)


def age_everything(ws, seconds: float = 2 * HOUR) -> None:
    when = time.time() - seconds
    for _, path in ws.layout.iter_object_paths():
        os.utime(path, (when, when))


def stored(ws) -> set[str]:
    return {digest for digest, _ in ws.layout.iter_object_paths()}


def test_nothing_reachable_is_removed(s):
    age_everything(s.ws)
    before = stored(s.ws)
    outcome = collect_garbage(s.ws, grace_s=0)
    assert outcome.result.removed_objects == 0 and stored(s.ws) == before
    assert validate(s.ws).findings == []


def test_deleted_model_loses_its_own_blobs_but_not_shared_ones(s):
    delete_model(s.ws, "b", delete_files=True)
    age_everything(s.ws)
    only_b = s.b.manifest.object_digests() - s.a.manifest.object_digests()
    outcome = collect_garbage(s.ws)
    gone = only_b | {s.b.manifest_digest}
    assert outcome.result.removed_objects == len(gone)
    assert stored(s.ws) == s.a.manifest.object_digests() | {s.a.manifest_digest}
    assert validate(s.ws).findings == []


def test_young_objects_survive_the_default_grace_period(s):
    delete_model(s.ws, "b", delete_files=True)
    before = stored(s.ws)
    outcome = collect_garbage(s.ws)  # everything was just written
    assert outcome.result.removed_objects == 0 and len(outcome.plan.young) > 0
    assert stored(s.ws) == before


def test_lineage_keeps_parent_manifest_not_its_weights(s):
    child, manifest, own_tensor, optimizer = register_child(s)
    delete_model(s.ws, "a", delete_files=True)
    age_everything(s.ws)
    collect_garbage(s.ws)
    left = stored(s.ws)
    assert s.a.manifest_digest in left  # the parent's manifest stays readable
    assert s.tensor("a", EXCLUSIVE) not in left  # its weights the child replaced are gone
    assert {own_tensor, optimizer, child} <= left and manifest.object_digests() <= left
    assert [node.manifest for node in lineage(s.ws, "child")] == [child, s.a.manifest_digest]
    assert lineage(s.ws, "child")[1].problem is None
    assert validate(s.ws).ok


def test_dry_run_lists_and_removes_nothing(s):
    delete_model(s.ws, "b", delete_files=True)
    age_everything(s.ws)
    stale = s.ws.layout.tmp / "obj-1-abcd.tmp"
    stale.write_bytes(b"12345")
    os.utime(stale, (time.time() - 2 * HOUR,) * 2)
    state = workspace_state(s.root)
    outcome = collect_garbage(s.ws, dry_run=True)
    assert outcome.result is None and workspace_state(s.root) == state
    only_b = (s.b.manifest.object_digests() - s.a.manifest.object_digests()) | {s.b.manifest_digest}
    assert {d.digest for d in outcome.plan.objects} == only_b
    assert outcome.plan.bytes == sum(s.ws.objects.size(d) for d in only_b) + 5


def test_interrupted_view_builds_are_swept(s):
    debris = s.ws.models_dir / ".view-c-123-abcdef.tmp"
    debris.mkdir()
    (debris / "metadata.json").write_text("{}")
    fresh = s.ws.models_dir / ".deleted-d-456-abcdef.tmp"
    fresh.mkdir()
    for path in (debris / "metadata.json", debris):
        os.utime(path, (time.time() - 2 * HOUR,) * 2)
    assert "temp-debris" in validate(s.ws).codes()
    outcome = collect_garbage(s.ws)
    assert outcome.result.removed_temp == 1
    assert not debris.exists() and fresh.exists()


def test_unreadable_registered_manifest_aborts_and_deletes_nothing(s):
    delete_model(s.ws, "b", delete_files=True)
    age_everything(s.ws)
    flip_bit(s.obj(s.a.manifest_digest), offset=30)
    before = stored(s.ws)
    with pytest.raises(GcAbortedError, match=f"manifest {s.a.manifest_digest[:12]} of 'a' cannot be read"):
        collect_garbage(s.ws)
    assert stored(s.ws) == before


@pytest.mark.parametrize("damage", ["empty", "missing"])
def test_damaged_or_lost_registry_aborts_and_deletes_nothing(s, damage):
    age_everything(s.ws)
    before = stored(s.ws)
    if damage == "empty":
        s.ws.registry_path.write_bytes(b"")
    else:
        s.ws.registry_path.unlink()
    with pytest.raises(RegistryError):
        collect_garbage(s.ws)
    assert stored(s.ws) == before


def test_quarantine_is_never_collected(s):
    digest = s.tensor("a", EXCLUSIVE)
    move_aside(s.ws.layout, s.obj(digest), "objects", "test", digest=digest, models=["a"])
    collect_garbage(s.ws, grace_s=0)
    assert [item.record.digest for item in list_quarantine(s.ws.layout)] == [digest]


def test_empty_folder_has_nothing_to_collect(workspace):
    outcome = collect_garbage(workspace, grace_s=0)
    assert outcome.result.removed_objects == 0 and not (workspace.root / ".modelstore").exists()


def _gc_just_before_commit(monkeypatch, workspace, grace_s):
    """Run gc in the window an import is most exposed: blobs and manifest written, not registered."""
    real_register = registry.ingest.folder.register

    def register_after_gc(*args, **kwargs):
        collect_garbage(workspace, grace_s=grace_s)
        return real_register(*args, **kwargs)

    monkeypatch.setattr(registry.ingest.folder, "register", register_after_gc)


def test_gc_during_an_import_never_breaks_it(s, monkeypatch):
    """Re-importing a deleted model's old blobs refreshes them, so gc spares them."""
    delete_model(s.ws, "a", delete_files=True)
    age_everything(s.ws)
    _gc_just_before_commit(monkeypatch, s.ws, grace_s=HOUR)
    result = registry.ingest.folder.import_folder(s.ws, s.src_a, name="again")
    assert result.stats.new_objects <= 1  # the old blobs were reused, only the manifest is new
    assert validate(s.ws).ok


def test_without_grace_an_import_fails_cleanly_never_half_registered(s, monkeypatch):
    """What the grace period prevents: gc taking blobs mid-import. Even then nothing dangles."""
    _gc_just_before_commit(monkeypatch, s.ws, grace_s=0)
    source = _fresh_source(s)
    with pytest.raises(ObjectMissingError):
        registry.ingest.folder.import_folder(s.ws, source, name="c")
    assert sorted(s.ws.read_registry().models) == ["a", "b"]
    assert not (s.ws.models_dir / "c").exists() and validate(s.ws).ok


def _fresh_source(s):
    """A source folder whose weights the store does not have yet (its blobs will be new)."""
    import shutil

    from store.tensors.tensorfile import read_header

    folder = s.src_a.parent / "src-fresh"
    shutil.copytree(s.src_a, folder)
    weights = folder / "model.safetensors"
    spec = {t.name: t for t in read_header(weights).tensors}[EXCLUSIVE]
    data = bytearray(weights.read_bytes())
    data[spec.start] ^= 0x01
    weights.write_bytes(bytes(data))
    return folder
