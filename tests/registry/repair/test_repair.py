"""validate-registry --fix: one break per test, the exact finding, the repair, a clean
deep re-validation, model ``b`` untouched, and a second --fix that changes nothing.

Restores here come from the local source folder (the models were imported from one);
restores from the test Hub server are in test_hub_restore.py.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from registry.ops import delete_model, register
from registry.repair.fix import repair
from registry.check.validate import validate
from registry.errors import Aborted, StoreChangedError
from store.layout import OBJECT_MODE
from store.manifest import Manifest, TrainingOrigin, put_manifest
from store.quarantine import list_quarantine
from store.tensors.tensorfile import read_header
from tests.registry.breakage import (
    EXCLUSIVE, SAME_SIZE, SHARED, finding_keys, flip_bit, register_child, rewrite_object, two_models,
    workspace_state,
)


@pytest.fixture
def s(workspace, tiny_model):
    return two_models(workspace, tiny_model)


def fix(ws, answer: bool = True, **kwargs):
    return repair(ws, on_plan=lambda report, plan: answer, **kwargs)


def step_kinds(result) -> list[str]:
    return [step.kind for step in result.plan.steps if not step.text.startswith("  ")]


def repaired(s, result, b_before) -> None:
    """The repair left nothing wrong, b is as it was, and running it again changes nothing."""
    assert result.outcome is not None and result.outcome.failed == []
    assert result.after.ok, [f.line() for f in result.after.errors]
    deep = validate(s.ws)
    assert deep.errors == [], [f.line() for f in deep.errors]
    assert s.snapshot("b") == b_before
    state = workspace_state(s.root)
    again = fix(s.ws)
    assert again.plan.empty and again.outcome is None
    assert workspace_state(s.root) == state


def quarantined(s, kind: str):
    return [item for item in list_quarantine(s.ws.layout) if item.record.kind == kind]


# --- objects ------------------------------------------------------------------------------


@pytest.mark.parametrize("damage, code", [
    (flip_bit, "object-corrupt"),
    (lambda p: rewrite_object(p, p.read_bytes()[:-9]), "object-size"),
    (lambda p: rewrite_object(p, p.read_bytes() + b"tail"), "object-size"),
])
def test_damaged_blob_is_quarantined_and_restored_from_the_local_source(s, damage, code):
    digest = s.tensor("a", EXCLUSIVE)
    path = s.obj(digest)
    good, b_before = path.read_bytes(), s.snapshot("b")
    damage(path)
    bad = path.read_bytes()
    result = fix(s.ws)
    assert finding_keys(result.before.errors) == [(code, "error", ("a",), digest, s.rel(path))]
    assert step_kinds(result) == ["quarantine-object", "restore-object"]
    assert result.plan.destructive
    assert f"local folder {s.src_a}" in result.plan.steps[1].text
    assert path.read_bytes() == good and os.stat(path).st_mode & 0o777 == OBJECT_MODE
    [item] = quarantined(s, "objects")
    assert item.record.digest == digest and item.record.models == ["a"]
    assert (item.folder / digest).read_bytes() == bad  # never deleted
    repaired(s, result, b_before)


def test_deleted_blob_is_restored_without_moving_anything(s):
    digest = s.tensor("a", EXCLUSIVE)
    good, b_before = s.obj(digest).read_bytes(), s.snapshot("b")
    os.unlink(s.obj(digest))
    result = fix(s.ws)
    assert finding_keys(result.before.errors) == [
        ("object-missing", "error", ("a",), digest, s.rel(s.obj(digest))),
    ]
    assert step_kinds(result) == ["restore-object"] and not result.plan.destructive
    assert s.obj(digest).read_bytes() == good
    assert list_quarantine(s.ws.layout) == []
    repaired(s, result, b_before)


def test_blob_replaced_by_another_blobs_bytes(s):
    victim, donor = (s.tensor("a", t) for t in SAME_SIZE)
    donor_bytes, b_before = s.obj(donor).read_bytes(), s.snapshot("b")
    rewrite_object(s.obj(victim), donor_bytes)
    result = fix(s.ws)
    assert finding_keys(result.before.errors) == [
        ("object-corrupt", "error", ("a",), victim, s.rel(s.obj(victim))),
    ]
    assert s.obj(donor).read_bytes() == donor_bytes
    assert quarantined(s, "objects")[0].record.actual == donor
    repaired(s, result, b_before)


def test_restored_model_loads_like_its_source(s):
    import torch
    from transformers import AutoModelForCausalLM

    flip_bit(s.obj(s.tensor("a", EXCLUSIVE)))
    assert fix(s.ws).after.ok
    tokens = torch.tensor([[1, 5, 9, 200]])
    with torch.no_grad():
        got = AutoModelForCausalLM.from_pretrained(s.root / "models" / "a")(tokens).logits
        want = AutoModelForCausalLM.from_pretrained(s.src_a)(tokens).logits
    assert torch.equal(got, want)


def test_shared_blob_is_restored_once_for_both_models(s):
    digest = s.tensor("a", SHARED)
    flip_bit(s.obj(digest))
    result = fix(s.ws)
    assert finding_keys(result.before.errors) == [
        ("object-corrupt", "error", ("a", "b"), digest, s.rel(s.obj(digest))),
    ]
    assert step_kinds(result) == ["quarantine-object", "restore-object"]
    assert result.after.ok and validate(s.ws).ok


def test_changed_source_restores_nothing_and_says_what_to_do(s):
    digest = s.tensor("a", EXCLUSIVE)
    b_before = s.snapshot("b")
    flip_bit(s.obj(digest))
    source = s.src_a / "model.safetensors"
    spans = {spec.name: spec for spec in read_header(source).tensors}
    data = bytearray(source.read_bytes())
    data[-1] ^= 1  # the last tensor in the file changes, ...
    data[spans[EXCLUSIVE].start + 8] ^= 1  # ... and so does the embedding, the one needed
    source.write_bytes(bytes(data))
    result = fix(s.ws)
    assert any(f"tensor {EXCLUSIVE!r} changed since it was imported" in w for w in result.outcome.warnings)
    assert len(result.outcome.failed) == 1 and "'a'" in result.outcome.failed[0]
    assert finding_keys(result.after.errors) == [
        ("object-missing", "error", ("a",), digest, s.rel(s.obj(digest))),
    ]
    assert not result.ok and len(quarantined(s, "objects")) == 1
    assert s.snapshot("b") == b_before
    # Nothing but the missing object was written: a changed source leaves no stray blobs.
    assert not any(f.code == "object-unreferenced" for f in validate(s.ws).notes)


def test_missing_source_folder_is_reported(s):
    digest = s.tensor("a", EXCLUSIVE)
    os.unlink(s.obj(digest))
    shutil.rmtree(s.src_a)
    result = fix(s.ws)
    assert result.outcome.warnings == [f"the local source folder {s.src_a} no longer exists"]
    assert not result.ok


def test_object_no_source_can_restore_is_reported_with_what_to_do(s):
    only_run = s.ws.objects.put_bytes(b'{"trained": "only"}\n')
    trained = Manifest(**{f: getattr(s.a.manifest, f) for f in s.a.manifest.__struct_fields__
                          if f not in ("origin", "files", "source")},
                       source="custom",
                       files={**s.a.manifest.files, "extra.json": type(s.a.manifest.files["config.json"])(
                           digest=only_run.digest, size=only_run.size)},
                       origin=TrainingOrigin(run="run-1"))
    register(s.ws, "t", put_manifest(s.ws.objects, trained), trained)
    os.unlink(s.obj(only_run.digest))
    result = fix(s.ws)
    assert step_kinds(result) == []
    [cannot] = result.plan.cannot
    assert "no restore source handles origin training" in cannot
    assert "re-run the training that produced 't' (run 'run-1')" in cannot
    assert not result.ok


def test_writable_object_is_sealed_again(s):
    digest = s.tensor("a", EXCLUSIVE)
    b_before = s.snapshot("b")
    os.chmod(s.obj(digest), 0o664)
    result = fix(s.ws)
    assert step_kinds(result) == ["seal-object"]
    assert os.stat(s.obj(digest)).st_mode & 0o777 == OBJECT_MODE
    assert validate(s.ws).findings == []
    repaired(s, result, b_before)


# --- manifests ----------------------------------------------------------------------------


def test_corrupted_manifest_is_quarantined_and_reported(s):
    digest = s.a.manifest_digest
    b_before = s.snapshot("b")
    flip_bit(s.obj(digest), offset=20)
    result = fix(s.ws)
    assert finding_keys(result.before.errors) == [
        ("manifest-corrupt", "error", ("a",), digest, s.rel(s.obj(digest))),
    ]
    assert step_kinds(result) == ["quarantine-object"]
    [cannot] = result.plan.cannot
    assert "model 'a'" in cannot and "delete-model" in cannot
    assert [f.code for f in result.after.errors] == ["manifest-missing"] and not result.ok
    assert s.snapshot("b") == b_before
    again = fix(s.ws)
    assert again.plan.empty and again.outcome is None  # nothing more it can do
    delete_model(s.ws, "a", delete_files=True)
    assert validate(s.ws).ok


# --- the registry -------------------------------------------------------------------------


def _emptied(data: bytes) -> bytes:
    return b""


def _duplicated(data: bytes) -> bytes:
    doc = json.loads(data)
    again = b'"models": {\n"a": ' + json.dumps(doc["models"]["a"]).encode() + b","
    return data.replace(b'"models": {', again, 1)


def _unknown_field(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["models"]["b"]["colour"] = "blue"
    return json.dumps(doc).encode()


@pytest.mark.parametrize("damage, code", [
    (_emptied, "registry-empty"),
    (lambda d: d[: len(d) // 3], "registry-truncated"),
    (lambda d: d.replace(b":", b"=", 2), "registry-invalid-json"),
    (_duplicated, "registry-duplicate-key"),
    (_unknown_field, "registry-unknown-field"),
    (None, "registry-missing"),
])
def test_damaged_registry_is_recovered_listing_every_entry(s, damage, code):
    path = s.ws.registry_path
    models_before, b_before = s.ws.read_registry().models, s.snapshot("b")
    data = path.read_bytes()
    if damage is None:
        path.unlink()
    else:
        path.write_bytes(damage(data))
    damaged = path.read_bytes() if path.exists() else None
    result = fix(s.ws)
    assert [f.code for f in result.before.errors] == [code]
    assert step_kinds(result) == ["recover-registry"]
    assert sorted(result.plan.recovery.brought_back) == ["a", "b"]
    assert result.plan.recovery.dropped == {}
    assert s.ws.read_registry().models == models_before
    if damaged is not None:
        [kept] = quarantined(s, "registry")
        assert (kept.folder / "registry.json").read_bytes() == damaged
    repaired(s, result, b_before)


def test_recovery_does_not_resurrect_a_model_deleted_with_its_view(s):
    delete_model(s.ws, "b", delete_files=True)  # registry.json.prev still lists b
    s.ws.registry_path.write_bytes(b"{")
    result = fix(s.ws)
    recovery = result.plan.recovery
    assert recovery.used_previous and list(recovery.brought_back) == ["a"]
    assert recovery.dropped == {"b": "its view models/b/ no longer exists (deleted?)"}
    assert "do not bring back 'b'" in "\n".join(step.text for step in result.plan.steps)
    assert list(s.ws.read_registry().models) == ["a"] and result.ok


def test_recovery_lists_a_view_kept_by_delete_model(s):
    delete_model(s.ws, "b")  # the view stays: it is evidence like any other
    s.ws.registry_path.write_bytes(b"")
    result = fix(s.ws)
    assert sorted(result.plan.recovery.brought_back) == ["a", "b"]
    assert "bring back 'b'" in "\n".join(step.text for step in result.plan.steps)
    assert sorted(s.ws.read_registry().models) == ["a", "b"]


def test_newer_registry_is_left_alone(s):
    doc = json.loads(s.ws.registry_path.read_bytes())
    doc["schema_version"] = 7
    s.ws.registry_path.write_text(json.dumps(doc))
    state = workspace_state(s.root)
    result = fix(s.ws)
    assert [f.code for f in result.before.errors] == ["registry-newer-schema"]
    assert result.plan.empty and "newer modelstore" in result.plan.cannot[0]
    assert not result.ok and workspace_state(s.root) == state


def test_registry_changed_between_plan_and_execution_stops_everything(s):
    s.ws.registry_path.write_bytes(b"")

    def meddle(report, plan):
        s.ws.registry_path.write_bytes(b"[]")  # another process writes meanwhile
        return True

    with pytest.raises(StoreChangedError):
        repair(s.ws, on_plan=meddle)
    assert s.ws.registry_path.read_bytes() == b"[]" and list_quarantine(s.ws.layout) == []


# --- views --------------------------------------------------------------------------------


def _dangling(s):
    link = s.link("a", EXCLUSIVE)
    link.unlink()
    link.symlink_to("../../../.modelstore/objects/00/gone")


def _retargeted(s):
    link = s.link("a", EXCLUSIVE)
    link.unlink()
    link.symlink_to(os.readlink(s.link("b", EXCLUSIVE)))


def _replaced(s):
    link = s.link("a", EXCLUSIVE)
    data = link.read_bytes()
    link.unlink()
    link.write_bytes(data)


def _extra(s):
    (s.root / "models" / "a" / "notes").mkdir()
    (s.root / "models" / "a" / "notes" / "todo.txt").write_text("mine")


def _edited(s):
    (s.root / "models" / "a" / "model.safetensors.index.json").write_text("{}")


@pytest.mark.parametrize("damage, code, moved", [
    (_dangling, "view-link-dangling", None),
    (_retargeted, "view-link-retargeted", None),
    (_replaced, "view-link-replaced", f"tensor-{EXCLUSIVE}.safetensors"),
    (_extra, "view-extra-file", "notes"),
    (_edited, "view-file-modified", None),
    (lambda s: shutil.rmtree(s.root / "models" / "a"), "view-missing", None),
])
def test_damaged_view_is_rebuilt(s, damage, code, moved):
    b_before = s.snapshot("b")
    damage(s)
    result = fix(s.ws)
    assert [(f.code, f.models) for f in result.before.errors] == [(code, ("a",))]
    assert step_kinds(result) == ["rebuild-view"]
    kept = quarantined(s, "view-files")
    assert [item.folder.joinpath(moved).exists() for item in kept] == ([True] if moved else [])
    repaired(s, result, b_before)


def test_orphan_directory_is_moved_aside(s):
    orphan = s.root / "models" / "leftover"
    orphan.mkdir()
    (orphan / "weights.bin").write_bytes(b"someone's")
    b_before = s.snapshot("b")
    result = fix(s.ws)
    assert step_kinds(result) == ["move-orphan"]
    assert not orphan.exists()
    [item] = quarantined(s, "orphans")
    assert (item.folder / "leftover" / "weights.bin").read_bytes() == b"someone's"
    assert item.record.original == "models/leftover"
    repaired(s, result, b_before)


# --- the repair as a whole ----------------------------------------------------------------


def test_clean_store_plan_is_empty_and_nothing_changes(s):
    state = workspace_state(s.root)
    result = fix(s.ws)
    assert result.plan.empty and result.plan.cannot == [] and result.outcome is None and result.ok
    assert workspace_state(s.root) == state


def test_dry_run_and_declining_change_nothing(s):
    flip_bit(s.obj(s.tensor("a", EXCLUSIVE)))
    (s.root / "models" / "leftover").mkdir()
    state = workspace_state(s.root)
    dry = repair(s.ws, dry_run=True)
    assert step_kinds(dry) == ["move-orphan", "quarantine-object", "restore-object"]
    assert dry.outcome is None and not dry.ok
    with pytest.raises(Aborted):
        fix(s.ws, answer=False)
    assert workspace_state(s.root) == state


def test_several_breaks_at_once(s):
    b_before = s.snapshot("b")
    flip_bit(s.obj(s.tensor("a", EXCLUSIVE)))
    os.unlink(s.obj(s.tensor("a", SAME_SIZE[0])))
    _extra(s)
    s.ws.registry_path.write_bytes(b"{}{}")
    result = fix(s.ws)
    assert step_kinds(result) == ["recover-registry", "quarantine-object", "restore-object",
                                  "restore-object", "rebuild-view"]
    repaired(s, result, b_before)


def test_registry_rebuilt_from_views_alone(s):
    models_before, b_before = s.ws.read_registry().models, s.snapshot("b")
    (s.ws.models_dir / "registry.json.prev").unlink()
    s.ws.registry_path.write_bytes(b"\x00\x01garbage")
    result = fix(s.ws)
    assert not result.plan.recovery.used_previous
    assert result.plan.recovery.brought_back == {"a": "from its view's metadata.json",
                                                 "b": "from its view's metadata.json"}
    assert s.ws.read_registry().models == models_before  # nothing lost by rebuilding
    repaired(s, result, b_before)


def test_lost_lineage_manifest_is_recorded_so_gc_can_run_again(s):
    from registry.space.gc import collect_garbage
    from registry.errors import GcAbortedError

    register_child(s)
    delete_model(s.ws, "a", delete_files=True)
    parent = s.a.manifest_digest
    os.unlink(s.obj(parent))  # lineage history gone: nothing can restore a manifest
    with pytest.raises(GcAbortedError, match=f"lineage manifest {parent[:12]} of 'child'"):
        collect_garbage(s.ws, grace_s=0)
    result = fix(s.ws)
    assert finding_keys(result.before.errors) == [
        ("lineage-missing", "error", ("child",), parent, s.rel(s.obj(parent))),
    ]
    assert step_kinds(result) == ["record-lost"] and result.ok
    lost = ("lineage-lost", "info", ("child",), parent, s.rel(s.obj(parent)))
    assert finding_keys(validate(s.ws).notes)[0] == lost
    assert collect_garbage(s.ws, grace_s=0).skipped_lineage == [parent]
    assert fix(s.ws).plan.empty


def test_repair_stopped_by_a_full_disk_loses_nothing_and_a_second_run_finishes(s, monkeypatch):
    import errno

    from store.errors import StoreIOError
    from store.tensors import tensorsplit

    digest = s.tensor("a", EXCLUSIVE)
    good, b_before = s.obj(digest).read_bytes(), s.snapshot("b")
    flip_bit(s.obj(digest))
    bad = s.obj(digest).read_bytes()
    real_copy = tensorsplit.copy_tensor

    def disk_full(objects, *args, **kwargs):
        raise StoreIOError(objects.layout.tmp, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(tensorsplit, "copy_tensor", disk_full)
    first = fix(s.ws)
    assert any("ENOSPC" in w for w in first.outcome.warnings) and len(first.outcome.failed) == 1
    assert [f.code for f in first.after.errors] == ["object-missing"]
    [item] = quarantined(s, "objects")
    assert (item.folder / digest).read_bytes() == bad  # the damaged bytes are kept, not lost
    monkeypatch.setattr(tensorsplit, "copy_tensor", real_copy)
    second = fix(s.ws)
    assert step_kinds(second) == ["restore-object"] and s.obj(digest).read_bytes() == good
    repaired(s, second, b_before)


def test_recovery_keeps_a_model_whose_manifest_is_damaged_visible(s):
    b_before = s.snapshot("b")
    flip_bit(s.obj(s.a.manifest_digest), offset=20)
    s.ws.registry_path.write_bytes(b"")
    result = fix(s.ws)
    assert result.plan.recovery.brought_back["a"].endswith("; its manifest is damaged")
    assert sorted(s.ws.read_registry().models) == ["a", "b"]
    assert [(f.code, f.models) for f in result.after.errors] == [("manifest-missing", ("a",))]
    assert s.snapshot("b") == b_before


def test_recovery_leaves_the_view_of_a_collected_model_an_orphan(s):
    from registry.space.gc import collect_garbage

    delete_model(s.ws, "b")  # keeps models/b, then gc collects its manifest and blobs
    collect_garbage(s.ws, grace_s=0)
    s.ws.registry_path.write_bytes(b"")
    result = fix(s.ws)
    assert list(result.plan.recovery.brought_back) == ["a"]
    assert step_kinds(result) == ["recover-registry", "move-orphan"]
    assert result.ok and not (s.root / "models" / "b").exists()
