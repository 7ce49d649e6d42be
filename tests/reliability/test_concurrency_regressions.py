"""Regression tests for the bugs the concurrency harness found, each pinned without timing:
the losing side of every race is put in the state it was in, then run.

1. The store was created folder first, FORMAT last: a process opening it in between
   refused it as "no FORMAT marker" (5 of 8 concurrent first imports failed), and so did
   every later command after ``delete-model`` on an empty folder (its lock made a bare
   ``.modelstore``).
2. An unregistered view that another writer was committing (or deleting) made imports fail
   with "models/X exists but is not registered".
3. Two writers committing the same version without the lock left the registry entry of one
   and the view (metadata.json) of the other.
4. A delete's view removal and a registry write that overtook the delete left a registered
   name without its view.
5. Two writers keeping the same registry generation left a ``registry-prev-*.tmp`` link.
6. Re-importing a registered version in another second wrote a second manifest (and printed
   its digest, not the registered one).
7. gc --grace 0 taking an import's fresh objects failed it with "No such file or directory
   ... check the path and permissions" or "run validate-registry --fix".
8. gc failed ("No such file or directory") when a temp file it was removing was renamed
   into place by its writer at that instant; replacing a view failed the same way when a
   delete without the lock took the old view at that instant.

Where the losing side must act at one exact step, the test runs that step through the
project's fault seam (``fsops._step``, ``store.fs.faults.step`` as fsops calls it before every mutating operation).
"""

from __future__ import annotations

import os
import shutil

import msgspec
import pytest

import registry.ingest.folder
from registry.ops import _commit, delete_model, register
from registry.ingest.folder import import_folder
from registry.registry_file import _keep_previous
from registry.views import build_view, remove_view
from store.fs import fsops
from store.digest import digest_bytes
from registry.errors import ModelExistsError
from store.errors import REMOVED_IN_FLIGHT_HINT, ObjectMissingError
from store.gc import plan_gc, sweep
from store.layout import Layout
from store.fs.lock import writer_lock
from store.objects import ObjectStore, Batch
from tests.reliability.invariants import check_store, run_cli


def _objects(workspace) -> set[str]:
    return {digest for digest, _ in workspace.layout.iter_object_paths()}


def _unregister(workspace, name: str):
    """The state of a registration stopped between its view and its registry entry."""
    doc = workspace.read_registry()
    entry = doc.models.pop(name)
    workspace.write_registry(doc)
    return entry


# --- 1. the store appears whole -------------------------------------------------------------


def test_a_creator_that_lost_the_race_uses_the_winners_store_and_leaves_nothing(tmp_path):
    Layout(tmp_path).create()
    marker = (tmp_path / ".modelstore" / "FORMAT").read_bytes()
    Layout(tmp_path)._create_new()  # checked before the winner's rename, renames after it
    assert (tmp_path / ".modelstore" / "FORMAT").read_bytes() == marker
    assert sorted(p.name for p in tmp_path.iterdir()) == [".modelstore"]
    Layout(tmp_path).check_format()


def test_taking_the_lock_on_an_empty_folder_makes_a_whole_store(tmp_path):
    layout = Layout(tmp_path)
    with writer_lock(layout):
        pass
    layout.check_format()
    assert sorted(p.name for p in layout.store.iterdir()) == [
        "FORMAT", "lock", "objects", "quarantine", "tmp"]


def test_delete_on_an_empty_folder_leaves_it_usable(root, tiny_model):
    result = run_cli(root, "delete-model", "nothing", "-y")
    assert result.returncode == 1
    assert "no model named 'nothing' is registered" in result.stderr
    assert not (root / ".modelstore").exists()
    assert run_cli(root, "import-model", str(tiny_model()), "--name", "m", "-y").returncode == 0
    assert check_store(root) == []


# --- 2. and 3. a view being committed by another writer ------------------------------------------


def test_import_adopts_the_view_a_same_version_writer_left_uncommitted(workspace, tiny_model,
                                                                       monkeypatch):
    source = tiny_model()
    first = import_folder(workspace, source, name="m")
    entry = _unregister(workspace, "m")
    before = _objects(workspace)
    monkeypatch.setattr(registry.ingest.folder, "now_iso", lambda: "2999-01-01T00:00:00Z")  # a later second
    second = import_folder(workspace, source, name="m")
    # The view's own entry is registered, so registry and metadata.json agree, and the
    # second manifest (another created_at) is not even written.
    assert workspace.read_registry().models["m"] == entry == second.entry
    assert second.manifest_digest == first.manifest_digest
    assert _objects(workspace) == before
    assert check_store(workspace.root) == []


def test_a_writer_that_lost_the_view_race_registers_the_winners_entry(workspace, tiny_model):
    """Writer A placed its view of version V (its manifest made in an earlier second) but has
    not written the registry yet; writer B registers V too: it must register A's entry."""
    mine = import_folder(workspace, tiny_model(), name="m")
    _unregister(workspace, "m")
    shutil.rmtree(workspace.view_path("m"))
    earlier = msgspec.structs.replace(mine.manifest, created_at="2020-01-01T00:00:00Z")
    theirs = register(workspace, "m", None, earlier)
    _unregister(workspace, "m")
    assert theirs.manifest != mine.entry.manifest
    entry = register(workspace, "m", None, mine.manifest)
    assert entry == theirs and workspace.read_registry().models["m"] == theirs
    assert check_store(workspace.root) == []


def test_a_view_left_of_another_version_is_replaced(workspace, tiny_model):
    import_folder(workspace, tiny_model(seed=1, name="one"), name="m")
    _unregister(workspace, "m")
    result = import_folder(workspace, tiny_model(seed=2, name="two"), name="m")
    assert result.entry.model_id == "two"
    assert check_store(workspace.root) == []


def test_a_folder_holding_anything_but_links_is_still_refused(workspace, tiny_model):
    import_folder(workspace, tiny_model(), name="m")
    _unregister(workspace, "m")
    (workspace.root / "models" / "m" / "notes.txt").write_text("mine")
    with pytest.raises(ModelExistsError, match="models/m exists but is not registered"):
        import_folder(workspace, tiny_model(seed=2, name="two"), name="m")
    assert (workspace.root / "models" / "m" / "notes.txt").read_text() == "mine"


# --- 4. a delete and a registration of the same name ------------------------------------------


def test_remove_view_gives_the_view_back_to_a_name_registered_meanwhile(workspace, tiny_model):
    import_folder(workspace, tiny_model(), name="m")
    assert remove_view(workspace, "m") is False  # the registry (re)names m: its view stays
    assert check_store(workspace.root) == []
    assert sorted(p.name for p in workspace.models_dir.iterdir() if p.name.startswith(".")) == []


def test_a_registry_write_that_overtook_a_delete_brings_back_its_view(workspace, tiny_model):
    """The lost delete: writer W read the registry, then delete-model --delete-files ran to
    the end, then W wrote back what it had read. The entry is back; so must its view be."""
    import_folder(workspace, tiny_model(), name="gone")
    read_by_w = workspace.read_registry()
    delete_model(workspace, "gone", delete_files=True)
    assert not os.path.lexists(workspace.view_path("gone"))
    _commit(workspace, read_by_w)
    assert sorted(workspace.read_registry().models) == ["gone"]
    assert check_store(workspace.root) == []


# --- 5. the previous registry generation ---------------------------------------------------


def test_two_writers_keeping_the_same_generation_leave_no_link(workspace, tiny_model):
    import_folder(workspace, tiny_model(), name="m")
    tmp = workspace.layout.tmp
    _keep_previous(workspace.registry_path, tmp)
    _keep_previous(workspace.registry_path, tmp)  # same inode: rename() is a no-op
    assert list(tmp.iterdir()) == []
    assert (workspace.registry_path.with_name("registry.json.prev").read_bytes()
            == workspace.registry_path.read_bytes())


# --- 6. one manifest per version ----------------------------------------------------------------


def test_reimport_in_a_later_second_writes_no_second_manifest(workspace, tiny_model, monkeypatch):
    source = tiny_model()
    first = import_folder(workspace, source, name="m")
    before = _objects(workspace)
    monkeypatch.setattr(registry.ingest.folder, "now_iso", lambda: "2999-01-01T00:00:00Z")
    again = import_folder(workspace, source, name="m")
    assert _objects(workspace) == before
    assert again.manifest_digest == first.manifest_digest == again.entry.manifest


# --- 7. what an import says when gc took its objects ----------------------------------------


def test_a_temp_object_removed_before_its_commit_is_named_with_the_cause(tmp_path):
    layout = Layout(tmp_path)
    layout.create()
    store = ObjectStore(layout)
    with pytest.raises(ObjectMissingError) as info:
        with Batch(store) as batch:
            fd, tmp = layout.new_temp("obj")
            os.write(fd, b"payload")
            batch.add(fd, tmp, digest_bytes(b"payload"), None)
            tmp.unlink()  # what gc --grace 0 does to temp files
    assert info.value.hint == REMOVED_IN_FLIGHT_HINT and str(tmp) in str(info.value)
    assert list(layout.tmp.iterdir()) == []


def test_an_object_gone_before_the_commit_is_named_with_the_cause(workspace, tiny_model):
    """What gc --grace 0 does to an import between its blobs and its commit."""
    result = import_folder(workspace, tiny_model(), name="a")
    tensor = next(iter(result.manifest.tensors.values()))
    path = workspace.objects.path(tensor.digest)
    path.unlink()
    with pytest.raises(ObjectMissingError) as info:
        register(workspace, "b", None, result.manifest)
    assert info.value.digest == tensor.digest and info.value.hint == REMOVED_IN_FLIGHT_HINT
    assert sorted(workspace.read_registry().models) == ["a"]


# --- 8. a path that goes at the very step that acts on it -----------------------------------------


def _at_step(monkeypatch, op: str, action) -> list[str]:
    """Run ``action(path)`` once, when the first ``op`` step is reached (before it acts)."""
    real, seen = fsops._step, []

    def step(name, path):
        if name == op and not seen:
            seen.append(str(path))
            action(path)
        return real(name, path)

    monkeypatch.setattr(fsops, "_step", step)
    return seen


def test_gc_sweeping_a_temp_file_its_writer_commits_at_that_instant(tmp_path, monkeypatch):
    layout = Layout(tmp_path)
    layout.create()
    fd, tmp = layout.new_temp("obj")
    os.close(fd)
    plan = plan_gc(layout, keep=set(), grace_s=0)
    assert [d.path for d in plan.temp] == [tmp]
    committed = tmp_path / "committed"
    seen = _at_step(monkeypatch, "rmtree", lambda path: os.rename(path, committed))
    result = sweep(layout, plan)
    assert seen == [str(tmp)] and committed.exists()
    assert result.removed_temp == 1 and list(layout.tmp.iterdir()) == []


def test_replacing_a_view_that_a_delete_takes_at_that_instant_places_the_new_one(workspace, tiny_model,
                                                                                monkeypatch):
    import_folder(workspace, tiny_model(seed=1, name="one"), name="m")
    other = import_folder(workspace, tiny_model(seed=2, name="two"), name="other")
    entry = msgspec.structs.replace(other.entry, model_name="m", local_path="models/m")
    view = workspace.view_path("m")
    taken = workspace.root / "taken-by-delete"
    seen = _at_step(monkeypatch, "exchange", lambda path: os.rename(path, taken))
    assert build_view(workspace, entry, other.manifest) is True
    assert seen == [str(view)] and taken.is_dir()
    assert os.readlink(view / "config.json") == os.readlink(workspace.view_path("other") / "config.json")
