"""Conditional refs under concurrent pushes, and nothing from a remote trusted on pull."""

from __future__ import annotations

import threading

import pytest

from registry.check.validate import validate
from registry.remote.config import open_remote
from registry.remote.errors import NotFastForwardError, PushConflictError, RemoteRefError
from registry.remote.pull import pull
from registry.remote.push import push
from store.errors import ModelStoreError
from store.remote.objects import object_key, ref_key


def test_concurrent_pushes_of_one_name_have_exactly_one_winner(make_store, remote_url):
    a = make_store("a", {"m": 1}, remote=remote_url)
    b = make_store("b", {"m": 2}, remote=remote_url)
    for trial in range(4):
        name = f"m{trial}"
        for ws in (a, b):  # the same name, different versions
            ws_entry = ws.read_registry().models["m"]
            from registry.ops import register
            register(ws, name, ws_entry.manifest, ws.manifest(ws_entry.manifest))
        barrier = threading.Barrier(2)
        outcome: dict[str, object] = {}

        def run(label, ws):
            barrier.wait()
            try:
                outcome[label] = push(ws, open_remote(ws, None), name).manifest
            except (PushConflictError, NotFastForwardError) as e:  # lost at the ref, or after it
                outcome[label] = e

        threads = [threading.Thread(target=run, args=(label, ws)) for label, ws in (("a", a), ("b", b))]
        [t.start() for t in threads]
        [t.join() for t in threads]
        winners = [v for v in outcome.values() if isinstance(v, str)]
        losers = [v for v in outcome.values() if not isinstance(v, str)]
        assert len(winners) == 1 and len(losers) == 1, outcome
        named = losers[0].version if isinstance(losers[0], PushConflictError) else losers[0].theirs
        assert named == winners[0]
        assert open_remote(a, None).store.read_ref(name) is not None
        line = str(losers[0])
        assert "\n" not in line and repr(name) in line and winners[0][:12] in line


def _pushed(make_store, remote_url, name="tiny"):
    a = make_store("a", {name: 1}, remote=remote_url)
    push(a, open_remote(a, None), name)
    b = make_store("b", remote=remote_url)
    return a, b, open_remote(b, None), a.manifest(a.read_registry().models[name].manifest)


def _biggest(manifest):
    return max(manifest.expected_sizes().items(), key=lambda kv: kv[1])


def _assert_refused_and_clean(b, remote, fragment):
    with pytest.raises(ModelStoreError) as caught:
        pull(b, remote, "tiny")
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert "tiny" not in b.read_registry().models
    assert validate(b).ok
    tmp = b.layout.tmp
    assert not tmp.exists() or not [p for p in tmp.iterdir() if p.name.startswith("pull")]


def test_corrupt_object_is_refused(make_store, remote_url):
    a, b, remote, manifest = _pushed(make_store, remote_url)
    digest, size = _biggest(manifest)
    data = bytearray(a.objects.read_bytes(digest))
    data[-1] ^= 0xFF
    remote.store.backend.put(object_key(digest), [bytes(data)], size)
    _assert_refused_and_clean(b, remote, "hash to")
    assert not b.objects.exists(digest)


def test_truncated_object_is_refused(make_store, remote_url):
    a, b, remote, manifest = _pushed(make_store, remote_url)
    digest, size = _biggest(manifest)
    remote.store.backend.put(object_key(digest), [a.objects.read_bytes(digest)[:-10]], size - 10)
    _assert_refused_and_clean(b, remote, "truncated")


def test_manifest_naming_missing_blobs_is_refused(make_store, remote_url):
    a, b, remote, manifest = _pushed(make_store, remote_url)
    digest, _ = _biggest(manifest)
    remote.store.backend.delete(object_key(digest))
    _assert_refused_and_clean(b, remote, "has no object")


@pytest.mark.parametrize("garbage", [b"not json", b'{"manifest": "../../etc/passwd"}',
                                     b'{"manifest": "' + b"0" * 64 + b'", "extra": 1}', b"x" * (70 << 10)])
def test_garbage_ref_is_refused(make_store, tmp_path, garbage):
    url = (f"file://{tmp_path / 'remote'}", None)
    a, b, remote, _ = _pushed(make_store, url)
    remote.store.backend.delete(ref_key("tiny"))
    remote.store.backend.create(ref_key("tiny"), garbage)
    with pytest.raises(ModelStoreError):
        pull(b, remote, "tiny")
    assert validate(b).ok and not b.read_registry().models


def test_ref_to_missing_or_bad_manifest_is_one_error(make_store, tmp_path):
    url = (f"file://{tmp_path / 'remote'}", None)
    a, b, remote, _ = _pushed(make_store, url)
    digest = a.read_registry().models["tiny"].manifest
    remote.store.backend.put(object_key(digest), [b'{"architecture_type": 1}'], 24)
    _assert_refused_and_clean(b, remote, "its manifest is unusable")
    remote.store.backend.delete(object_key(digest))
    with pytest.raises(RemoteRefError, match="its manifest is unusable"):
        pull(b, remote, "tiny")
