"""restore_from_hub: what validate-registry --fix uses to bring back lost blobs of a Hub import."""

from __future__ import annotations

import os

from registry.hub.importer import import_from_hub
from registry.hub.restore import restore_from_hub
from registry.ingest.folder import import_folder
from registry.report import RecordingReporter
from tests.hub.fixtures import hub_server  # noqa: F401  (fixture)

REPO = "Qwen/Tiny"
SHARD2 = "model-00002-of-00003.safetensors"


def imported(workspace, hub, tiny_model):
    hub.add_repo(REPO, tiny_model(shards=3), card_license="mit")
    return import_from_hub(workspace, REPO, assume_yes=True).manifest


def lose(workspace, digests) -> None:
    for digest in digests:
        os.unlink(workspace.objects.path(digest))


def test_lost_objects_come_back_from_the_pinned_commit(workspace, hub_server, tiny_model):
    manifest = imported(workspace, hub_server, tiny_model)
    in_shard2 = manifest.origin.files[SHARD2].tensors[:2]
    wanted = {manifest.tensors[name].digest for name in in_shard2} | {manifest.files["config.json"].digest}
    lose(workspace, wanted)
    # Later commits on main must not matter: restore reads the commit the manifest pinned.
    hub_server.add_commit(REPO, {"config.json": "{}"}, message="break main")
    hub_server.requests.clear()
    reporter = RecordingReporter()

    restored = restore_from_hub(workspace, manifest, wanted | {"f" * 64}, reporter)

    assert restored == wanted
    for digest in wanted:
        assert workspace.objects.rehash(digest) == digest
    fetched = sorted({r.file for r in hub_server.requests.file_requests()})
    assert fetched == ["config.json", SHARD2]
    assert {r.revision for r in hub_server.requests if r.route == "resolve"} == {manifest.origin.commit}
    line = f"{SHARD2}: 2 of 2 object(s) restored from {REPO}@{manifest.origin.commit[:12]}"
    assert ("restore", line) in reporter.lines
    assert sorted(os.listdir(workspace.layout.tmp)) == []


def test_a_file_that_cannot_be_fetched_is_reported_not_restored(workspace, hub_server, tiny_model):
    manifest = imported(workspace, hub_server, tiny_model)
    shard2 = {manifest.tensors[n].digest for n in manifest.origin.files[SHARD2].tensors}
    config = manifest.files["config.json"].digest
    lose(workspace, shard2 | {config})
    hub_server.faults.add(kind="corrupt", match=SHARD2)
    reporter = RecordingReporter()

    restored = restore_from_hub(workspace, manifest, shard2 | {config}, reporter)

    assert restored == {config}
    assert not any(workspace.objects.exists(d) for d in shard2)
    warnings = [line for kind, line in reporter.lines if kind == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith(f"could not restore {SHARD2} from {REPO}@")
    assert "has sha256" in warnings[0]
    assert sorted(os.listdir(workspace.layout.tmp)) == []


def test_only_hub_origins_are_restored_from_the_hub(workspace, tiny_model):
    manifest = import_folder(workspace, tiny_model(), name="local").manifest
    assert restore_from_hub(workspace, manifest, manifest.object_digests()) == set()


def test_a_corrupt_object_left_in_place_is_not_reported_restored(workspace, hub_server, tiny_model):
    manifest = imported(workspace, hub_server, tiny_model)
    digest = manifest.files["config.json"].digest
    path = workspace.objects.path(digest)
    path.chmod(0o644)
    path.write_bytes(b"x" * path.stat().st_size)  # right size, wrong bytes: validate --fix quarantines first
    assert restore_from_hub(workspace, manifest, {digest}) == set()


def test_validate_fix_restores_a_corrupt_blob_from_the_test_hub(workspace, hub_server, tiny_model):
    from registry.repair.fix import repair
    from registry.check.validate import validate
    from tests.registry.breakage import flip_bit

    manifest = imported(workspace, hub_server, tiny_model)
    other = import_folder(workspace, tiny_model("qwen3", name="local-src"), name="other")
    other_before = {d: workspace.objects.path(d).stat().st_ino for d in other.manifest.object_digests()}
    name = manifest.origin.files[SHARD2].tensors[0]
    digest = manifest.tensors[name].digest
    flip_bit(workspace.objects.path(digest))
    [error] = validate(workspace).errors
    assert (error.code, error.digest) == ("object-corrupt", digest)

    hub_server.requests.clear()
    result = repair(workspace, on_plan=lambda report, plan: True)

    assert result.outcome.failed == [] and result.after.ok
    assert workspace.objects.rehash(digest) == digest
    assert sorted({r.file for r in hub_server.requests.file_requests()}) == [SHARD2]
    assert validate(workspace).errors == []
    assert {d: workspace.objects.path(d).stat().st_ino for d in other.manifest.object_digests()} == other_before
