"""Hub mirrors and caching proxies that list names only (the test Hub's ``mirror`` mode).

The import gets sizes and hashes the way ``snapshot_download`` does there: a HEAD of each
file's resolve URL at the pinned commit, and verifies every byte against them. A shard the
listing leaves out is found by a HEAD; an endpoint with no hash at all is refused in one
line, unless the user accepts a size-only check, which the manifest's origin then shows.
"""

from __future__ import annotations

import pytest

from registry.hub.errors import HubUnverifiableError
from registry.hub.importer import import_from_hub
from tests.hub.fixtures import hub_cache_dir, hub_server  # noqa: F401  (fixtures)

REPO = "Qwen/Tiny"


def publish(hub, tiny_model, **kwargs):
    return hub.add_repo(REPO, tiny_model("qwen2", name="src", **kwargs), card_license="apache-2.0")


def heads(hub) -> list[str]:
    return sorted(r.file for r in hub.requests.file_requests("*", method="HEAD"))


def test_a_names_only_mirror_imports_the_same_manifest_with_a_head_per_file(workspace, root, hub_server,
                                                                             tiny_model, tmp_path):
    publish(hub_server, tiny_model)
    direct = import_from_hub(workspace, REPO, name="direct", assume_yes=True)
    assert heads(hub_server) == []  # the Hub's own listing pins everything: no HEAD

    hub_server.mirror = True
    hub_server.requests.clear()
    mirrored = import_from_hub(workspace, REPO, name="mirrored", assume_yes=True)
    assert mirrored.manifest.tensors == direct.manifest.tensors
    assert mirrored.manifest.files == direct.manifest.files
    assert mirrored.manifest.origin.files == direct.manifest.origin.files
    assert heads(hub_server) == sorted(direct.manifest.origin.files)


def test_a_shard_the_listing_leaves_out_is_found_by_a_head(workspace, hub_server, tiny_model):
    publish(hub_server, tiny_model, shards=2)
    hub_server.mirror = True
    hub_server.unlisted = {"model-00002-of-00002.safetensors"}
    result = import_from_hub(workspace, REPO, assume_yes=True)
    assert "model-00002-of-00002.safetensors" in result.manifest.origin.files
    assert result.manifest.origin.files["model-00002-of-00002.safetensors"].sha256 is not None


def test_an_endpoint_with_no_hash_is_refused_unless_sizes_only_are_accepted(workspace, hub_server, tiny_model):
    publish(hub_server, tiny_model)
    hub_server.mirror = True
    hub_server.hash_headers = False
    with pytest.raises(HubUnverifiableError) as info:
        import_from_hub(workspace, REPO, assume_yes=True)
    assert str(info.value).startswith(f"{hub_server.endpoint} gives no sha256 or git blob id for {REPO}/")
    assert "--trust-size-only" in info.value.hint
    assert workspace.read_registry().models == {}

    result = import_from_hub(workspace, REPO, assume_yes=True, trust_size_only=True)
    origin = result.manifest.origin.files
    assert origin and all(f.sha256 is None and f.git_oid is None for f in origin.values())
