"""The source cache: unchanged source files are not read again; anything doubtful is."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from store.errors import UnsafePathError
from store.layout import Layout
from store.objects import ObjectStore
from store.sourcecache import SourceCache
from tests.conftest import settled


@pytest.fixture
def objects(tmp_path) -> ObjectStore:
    layout = Layout(tmp_path / "ws")
    layout.create()
    return ObjectStore(layout)


@pytest.fixture
def folder(tmp_path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    save_file({"a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
               "b.bias": torch.ones(5, dtype=torch.bfloat16)}, src / "model.safetensors")
    (src / "config.json").write_text('{"model_type": "qwen2"}')
    return settled(src)


def store_all(objects: ObjectStore, folder: Path) -> SourceCache:
    cache = SourceCache(objects.layout, objects, folder)
    cache.put_tensors("model.safetensors", folder / "model.safetensors")
    cache.put_file("config.json", folder / "config.json")
    cache.save()
    return cache


def forbid_reading(monkeypatch, objects: ObjectStore) -> None:
    def refuse(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(objects, "put_tensors", refuse)
    monkeypatch.setattr(objects, "put_file", refuse)


def test_an_unchanged_file_is_not_read_again(objects, folder, monkeypatch):
    first = SourceCache(objects.layout, objects, folder)
    stored = first.put_tensors("model.safetensors", folder / "model.safetensors")
    config = first.put_file("config.json", folder / "config.json")
    first.save()
    assert first.hits == [] and objects.layout.sources.is_dir()

    forbid_reading(monkeypatch, objects)
    again = SourceCache(objects.layout, objects, folder)
    assert again.put_tensors("model.safetensors", folder / "model.safetensors") == [
        type(s)(s.spec, type(s.put)(s.put.digest, s.put.size, written=False)) for s in stored]
    assert again.put_file("config.json", folder / "config.json").digest == config.digest
    assert again.hits == ["model.safetensors", "config.json"]
    assert not again.changed  # nothing learnt: the record is not rewritten


def test_a_hit_refreshes_the_blobs_it_reuses_so_gc_spares_them(objects, folder):
    store_all(objects, folder)
    digest = SourceCache(objects.layout, objects, folder).put_file("config.json", folder / "config.json").digest
    old = time.time() - 7200
    os.utime(objects.path(digest), (old, old))
    cache = SourceCache(objects.layout, objects, folder)
    cache.put_file("config.json", folder / "config.json")
    assert cache.hits == ["config.json"]
    assert objects.path(digest).stat().st_mtime > time.time() - 60


def test_a_file_written_moments_before_it_was_hashed_is_not_trusted(objects, folder):
    (folder / "config.json").write_text('{"model_type": "qwen3"}')  # mtime: now
    store_all(objects, folder)
    cache = SourceCache(objects.layout, objects, folder)
    cache.put_file("config.json", folder / "config.json")
    assert cache.hits == []  # remembered, but hashed again: a same-tick write could hide


def test_a_recent_entry_becomes_trusted_once_the_file_has_settled(objects, folder):
    (folder / "config.json").write_text('{"model_type": "qwen3"}')
    store_all(objects, folder)
    settled(folder / "config.json")  # a new identity (mtime, ctime): hashed once more...
    cache = store_all(objects, folder)
    assert cache.hits == ["model.safetensors"]
    cache = SourceCache(objects.layout, objects, folder)
    cache.put_file("config.json", folder / "config.json")
    assert cache.hits == ["config.json"]  # ...and trusted from then on


def test_a_modified_file_is_hashed_again(objects, folder):
    first = store_all(objects, folder)
    before = SourceCache(objects.layout, objects, folder).put_file("config.json", folder / "config.json")
    assert first.hits == []
    (folder / "config.json").write_text('{"model_type": "qwen2"}')  # same bytes, new mtime
    (folder / "config.json").write_text('{"model_type": "qwen3"}')
    cache = SourceCache(objects.layout, objects, folder)
    after = cache.put_file("config.json", folder / "config.json")
    assert cache.hits == [] and after.digest != before.digest
    assert objects.read_bytes(after.digest) == b'{"model_type": "qwen3"}'


def test_a_tensor_changed_in_place_with_the_same_size_is_split_again(objects, folder):
    store_all(objects, folder)
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last byte of b.bias
    path.write_bytes(bytes(data))
    cache = SourceCache(objects.layout, objects, folder)
    stored = {s.spec.name: s.put for s in cache.put_tensors("model.safetensors", path)}
    assert cache.hits == [] and stored["b.bias"].written and not stored["a.weight"].written


def test_a_missing_blob_sends_the_file_back_to_hashing(objects, folder):
    store_all(objects, folder)
    cache = SourceCache(objects.layout, objects, folder)
    stored = cache.put_tensors("model.safetensors", folder / "model.safetensors")
    gone = stored[0].put.digest
    os.unlink(objects.path(gone))
    cache = SourceCache(objects.layout, objects, folder)
    again = {s.put.digest: s.put.written for s in cache.put_tensors("model.safetensors",
                                                                     folder / "model.safetensors")}
    assert cache.hits == [] and again[gone] is True and objects.rehash(gone) == gone


def test_a_blob_of_the_wrong_size_sends_the_file_back_to_hashing(objects, folder):
    store_all(objects, folder)
    digest = SourceCache(objects.layout, objects, folder).put_file("config.json", folder / "config.json").digest
    path = objects.path(digest)
    path.chmod(0o644)
    path.write_bytes(b"short")
    cache = SourceCache(objects.layout, objects, folder)
    put = cache.put_file("config.json", folder / "config.json")
    assert cache.hits == [] and put.written and objects.rehash(digest) == digest


def test_a_file_that_changes_while_it_is_hashed_is_not_remembered(objects, folder, monkeypatch):
    store_all(objects, folder)
    (folder / "config.json").write_text('{"model_type": "qwen3"}')
    real = objects.put_file

    def write_during(path):
        put = real(path)
        (folder / "config.json").write_text('{"model_type": "qwen2_moe"}')
        return put

    monkeypatch.setattr(objects, "put_file", write_during)
    cache = SourceCache(objects.layout, objects, folder)
    cache.put_file("config.json", folder / "config.json")
    assert "config.json" not in cache.files and cache.changed


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"version": 99, "folder": "x", "files": {}}'])
def test_an_unreadable_or_foreign_record_is_ignored(objects, folder, damage):
    first = store_all(objects, folder)
    first.path.chmod(0o644)
    first.path.write_bytes(damage)
    cache = SourceCache(objects.layout, objects, folder)
    assert cache.files == {}
    cache.put_file("config.json", folder / "config.json")
    assert cache.hits == [] and cache.changed


def test_a_record_is_only_read_for_its_own_folder(objects, folder, tmp_path):
    first = store_all(objects, folder)
    other = tmp_path / "other"
    other.mkdir()
    copy = SourceCache(objects.layout, objects, other)
    copy.path.write_bytes(first.path.read_bytes())  # another folder's record under this name
    assert SourceCache(objects.layout, objects, other).files == {}


def test_files_the_folder_no_longer_has_are_forgotten(objects, folder):
    store_all(objects, folder)
    cache = SourceCache(objects.layout, objects, folder)
    cache.put_tensors("model.safetensors", folder / "model.safetensors")
    cache.save()
    assert set(SourceCache(objects.layout, objects, folder).files) == {"model.safetensors"}


def test_a_linked_sources_folder_is_never_read_nor_written(objects, folder, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    objects.layout.sources.symlink_to(elsewhere)
    cache = SourceCache(objects.layout, objects, folder)
    cache.put_file("config.json", folder / "config.json")
    with pytest.raises(UnsafePathError, match="sources"):
        cache.save()
    assert list(elsewhere.iterdir()) == []
    with pytest.raises(UnsafePathError, match="sources"):
        objects.layout.require_no_links()

