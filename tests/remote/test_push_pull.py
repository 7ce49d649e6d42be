"""push / pull round trips against a real S3 server (weed mini) and a file:// remote."""

from __future__ import annotations

import json

import pytest

from registry.check.validate import validate
from registry.remote.config import open_remote
from registry.remote.pull import pull
from registry.remote.push import push
from tests.remote.helpers import fine_tune, run_cli


def _manifest_bytes(ws, name):
    entry = ws.read_registry().models[name]
    return entry.manifest, ws.objects.read_bytes(entry.manifest)


def test_round_trip(make_store, remote_url):
    a = make_store("a", {"tiny": 1}, remote=remote_url)
    b = make_store("b", remote=remote_url)
    first = push(a, open_remote(a, None), "tiny")
    assert first.ref == "created" and first.objects_sent > 0
    again = push(a, open_remote(a, None), "tiny")
    assert (again.objects_sent, again.manifests_sent, again.bytes_sent, again.ref) == (0, 0, 0, "unchanged")
    assert again.objects_present == first.objects_sent

    got = pull(b, open_remote(b, None), "tiny")
    assert got.objects_fetched == first.objects_sent and got.objects_present == 0
    assert _manifest_bytes(a, "tiny") == _manifest_bytes(b, "tiny")
    assert validate(b).ok
    assert (b.root / "models" / "tiny" / "config.json").is_file()
    # pulling again moves nothing and changes nothing
    again = pull(b, open_remote(b, None), "tiny")
    assert again.objects_fetched == 0 and validate(b).ok


def test_fine_tune_with_base_present_moves_only_changed_blobs(make_store, remote_url):
    a = make_store("a", {"base": 1}, remote=remote_url)
    fine_tune(a, "base", "ft", changed=2)
    b = make_store("b", remote=remote_url)
    push(a, open_remote(a, None), "base")
    pull(b, open_remote(b, None), "base")
    sent = push(a, open_remote(a, None), "ft")
    assert sent.objects_sent == 2  # only the two changed tensors; the rest is the base's
    got = pull(b, open_remote(b, None), "ft")
    base_m = a.manifest(a.read_registry().models["base"].manifest)
    ft_m = a.manifest(a.read_registry().models["ft"].manifest)
    changed = ft_m.object_digests() - base_m.object_digests()
    assert got.objects_fetched == len(changed) == 2
    assert got.bytes_fetched == sum(ft_m.expected_sizes()[d] for d in changed)
    assert got.entry.fine_tuned_from == "base"
    assert b.manifest(got.manifest).parents == [a.read_registry().models["base"].manifest]
    assert validate(b).ok


def test_pull_without_base_brings_lineage_manifests(make_store, remote_url):
    a = make_store("a", {"base": 1}, remote=remote_url)
    fine_tune(a, "base", "ft")
    push(a, open_remote(a, None), "ft")
    b = make_store("b", remote=remote_url)
    got = pull(b, open_remote(b, None), "ft")
    assert got.manifests_fetched == 2
    assert validate(b).ok


def test_cli_commands(make_store, remote_url, tmp_path):
    a = make_store("a", {"tiny": 1})
    b = make_store("b")
    url, endpoint = remote_url
    extra = ["--endpoint-url", endpoint] if endpoint else []
    for ws in (a, b):
        out = run_cli(ws.root, "remote", "add", "origin", url, *extra, "--default").stdout
        assert "added remote origin" in out
    assert "origin" in run_cli(a.root, "remote", "list").stdout
    out = run_cli(a.root, "push", "tiny").stdout
    assert "pushed tiny" in out and "ref created" in out
    listed = json.loads(run_cli(b.root, "list-models", "--remote", "origin", "--json").stdout)
    assert [m["name"] for m in listed] == ["tiny"]
    assert "tiny" in run_cli(b.root, "list-models", "--remote", "origin").stdout
    info = run_cli(b.root, "model-info", "tiny", "--remote", "origin").stdout
    assert "a pull fetches" in info
    assert "pulled tiny" in run_cli(b.root, "pull", "tiny").stdout
    assert run_cli(b.root, "validate-registry").returncode == 0
    missing = run_cli(b.root, "pull", "nope", check=False)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "no model 'nope'" in missing.stderr
    assert "removed remote origin" in run_cli(b.root, "remote", "remove", "origin").stdout
    config = (a.root / ".modelstore" / "remotes.json").read_text()
    assert "AWS" not in config and "secret" not in config.lower()


def test_remote_urls_are_checked(make_store):
    from store.errors import ModelStoreError
    from registry.remote.config import add_remote

    ws = make_store("a")
    for bad in ("http://x/y", "file://relative/path", "s3://Bad_Bucket/x", "s3://bucket/../x", "file:///a/../b"):
        with pytest.raises(ModelStoreError):
            add_remote(ws, "r", bad)
    with pytest.raises(ModelStoreError):
        add_remote(ws, "../r", "file:///tmp/x")
