"""du accounting: logical, exclusive and shared bytes, the dedup ratio, gc's candidates."""

from __future__ import annotations

import pytest

from registry.ops import delete_model
from registry.ingest.folder import import_folder
from registry.space.du import disk_usage


def test_two_names_for_one_folder_share_everything(workspace, tiny_model):
    one = import_folder(workspace, tiny_model(), name="one")
    import_folder(workspace, tiny_model(name="again"), name="two")
    usage = disk_usage(workspace)
    by_name = {m.name: m for m in usage.models}
    blobs = sum(one.manifest.expected_sizes().values())
    for model in by_name.values():
        assert model.exclusive_bytes == model.logical_bytes - model.shared_bytes
        assert model.shared_bytes == blobs  # only each one's manifest is its own
    assert usage.dedup_ratio == pytest.approx(usage.logical_bytes / usage.referenced_bytes)
    assert 1.9 < usage.dedup_ratio <= 2.0
    assert usage.unreferenced_bytes == 0 and usage.stored_bytes == usage.referenced_bytes


def test_deleted_model_bytes_become_unreferenced(workspace, tiny_model):
    kept = import_folder(workspace, tiny_model(), name="kept")
    import_folder(workspace, tiny_model("qwen3", name="q3"), name="gone")
    delete_model(workspace, "gone", delete_files=True)
    usage = disk_usage(workspace)
    assert [m.name for m in usage.models] == ["kept"]
    assert usage.models[0].exclusive_bytes == usage.models[0].logical_bytes
    kept_bytes = sum(kept.manifest.expected_sizes().values()) + workspace.objects.size(kept.manifest_digest)
    assert usage.referenced_bytes == kept_bytes
    assert usage.unreferenced_bytes == usage.stored_bytes - kept_bytes > 0
