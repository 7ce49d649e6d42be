"""Listing, getting, deleting, and lineage across deletions."""

from __future__ import annotations

import msgspec
import pytest

from registry.ops import delete_model, get_model, list_models, register
from registry.ingest.folder import import_folder
from registry.info import model_info
from registry.lineage import children_of, lineage
from registry.errors import Aborted, ModelNotFoundError, ViewMissingError
from store.manifest import put_manifest


@pytest.fixture
def base(workspace, tiny_model):
    return import_folder(workspace, tiny_model(), name="base")


def fine_tune(workspace, parent_result, name, parent_name, created_at):
    """A derived version: same weights but one tensor, with the parent in its lineage."""
    manifest = msgspec.structs.replace(
        parent_result.manifest, source="finetuned", parents=[parent_result.manifest_digest],
        created_at=created_at, model_id=name, origin=None,
    )
    digest = put_manifest(workspace.objects, manifest)
    entry = register(workspace, name, digest, manifest, fine_tuned_from=parent_name)
    return digest, entry


def test_list_is_most_recent_first_and_filters(workspace, tiny_model, base):
    import_folder(workspace, tiny_model("qwen3", name="q3"), name="q3")
    doc = workspace.read_registry()
    doc.models["base"] = msgspec.structs.replace(doc.models["base"], created_at="2020-01-01T00:00:00Z")
    workspace.write_registry(doc)
    assert [e.model_name for e in list_models(workspace)] == ["q3", "base"]
    assert [e.model_name for e in list_models(workspace, architecture="qwen2")] == ["base"]
    assert list_models(workspace, source="huggingface") == []


def test_get_unknown_name_suggests_close_ones(workspace, base):
    with pytest.raises(ModelNotFoundError) as info:
        get_model(workspace, "bsae")
    assert str(info.value) == "no model named 'bsae' is registered; did you mean 'base'?"


def test_get_checks_that_the_view_exists(workspace, base):
    import shutil

    shutil.rmtree(workspace.root / "models" / "base")
    with pytest.raises(ViewMissingError, match="the view of model 'base' is missing"):
        get_model(workspace, "base")


def test_delete_removes_entry_then_view_and_keeps_blobs(workspace, base):
    objects_before = set(workspace.layout.iter_object_paths())
    result = delete_model(workspace, "base", delete_files=True)
    assert result.view_removed and "base" not in workspace.read_registry().models
    assert not (workspace.root / "models" / "base").exists()
    assert set(workspace.layout.iter_object_paths()) == objects_before


def test_delete_without_files_keeps_the_view(workspace, base):
    result = delete_model(workspace, "base")
    assert not result.view_removed and (workspace.root / "models" / "base" / "config.json").exists()


def test_declined_confirmation_changes_nothing(workspace, base):
    before = workspace.registry_path.read_bytes()
    with pytest.raises(Aborted):
        delete_model(workspace, "base", confirm=lambda entry, children: False)
    assert workspace.registry_path.read_bytes() == before


def test_lineage_chain_and_children(workspace, base):
    ft1, _ = fine_tune(workspace, base, "ft1", "base", "2026-02-01T00:00:00Z")
    ft1_result = type(base)(entry=None, manifest_digest=ft1, manifest=workspace.manifest(ft1),
                            stats=None, skipped={})
    fine_tune(workspace, ft1_result, "ft2", "ft1", "2026-03-01T00:00:00Z")
    chain = lineage(workspace, "ft2")
    assert [n.names for n in chain] == [["ft2"], ["ft1"], ["base"]]
    assert children_of(workspace, "base") == ["ft1", "ft2"]
    assert children_of(workspace, "ft1") == ["ft2"]


def test_lineage_survives_deleting_a_parent(workspace, base):
    fine_tune(workspace, base, "ft", "base", "2026-02-01T00:00:00Z")
    deleted = delete_model(workspace, "base", delete_files=True)
    assert deleted.children == ["ft"]
    chain = lineage(workspace, "ft")
    assert chain[1].manifest == base.manifest_digest
    assert chain[1].names == [] and not chain[1].registered and chain[1].problem is None
    assert chain[1].source == "local"


def test_info_accounts_shared_and_exclusive_bytes(workspace, base, tiny_model):
    # "alone" counts the model's manifest too, as du does (the two commands agree).
    # So do the upstream bytes kept for a byte-exact export (the weight file's header).
    own_manifest = workspace.objects.size(base.manifest_digest)
    kept = sum(e.size for e in base.manifest.origin_blobs())
    alone = model_info(workspace, "base")
    assert alone.shared_bytes == 0 and alone.exclusive_bytes == alone.file_size + kept + own_manifest
    import_folder(workspace, tiny_model(name="again"), name="copy")
    shared = model_info(workspace, "base")
    assert shared.exclusive_bytes == own_manifest and shared.shared_bytes == shared.file_size + kept
    from registry.space.du import disk_usage

    du = {m.name: m for m in disk_usage(workspace).models}["base"]
    assert (du.exclusive_bytes, du.shared_bytes) == (shared.exclusive_bytes, shared.shared_bytes)
