"""Objects: atomic, idempotent, verified writes; per-tensor splitting at the byte level."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from safetensors.torch import load_file, save_file

from store.digest import digest_bytes, digest_file
from store.errors import CorruptObjectError, ObjectMissingError, SourceChangedError
from store.layout import Layout
from store.objects import ObjectStore


@pytest.fixture
def objects(tmp_path) -> ObjectStore:
    layout = Layout(tmp_path / "ws")
    layout.create()
    return ObjectStore(layout)


def test_put_bytes_names_object_by_blake3_and_seals_it(objects):
    put = objects.put_bytes(b"hello")
    path = objects.path(put.digest)
    assert put.digest == digest_bytes(b"hello") and put.written and put.size == 5
    assert path == objects.layout.objects / put.digest[:2] / put.digest[2:]
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert path.read_bytes() == b"hello"
    assert list(objects.layout.tmp.iterdir()) == []


def test_putting_an_existing_object_writes_nothing(objects):
    first = objects.put_bytes(b"same bytes")
    inode = objects.path(first.digest).stat().st_ino
    again = objects.put_bytes(b"same bytes")
    assert again.digest == first.digest and not again.written
    assert objects.path(first.digest).stat().st_ino == inode
    assert list(objects.layout.tmp.iterdir()) == []


def test_existing_object_of_wrong_size_is_rewritten(objects):
    put = objects.put_bytes(b"0123456789")
    path = objects.path(put.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"01234")  # truncated by some accident
    healed = objects.put_bytes(b"0123456789")
    assert healed.written and path.read_bytes() == b"0123456789"


def test_put_file_copies_verbatim_and_leaves_source(objects, tmp_path):
    source = tmp_path / "config.json"
    source.write_bytes(b'{"model_type": "qwen2"}')
    put = objects.put_file(source)
    assert objects.path(put.digest).read_bytes() == source.read_bytes()
    assert put.digest == digest_file(source)
    assert source.stat().st_mode & 0o200  # still writable: the source is never touched


def test_put_tensors_splits_into_canonical_loadable_blobs(objects, tmp_path):
    tensors = {"w": torch.randn(4, 3), "b": torch.arange(5, dtype=torch.int64),
               "h": torch.randn(2, 2).to(torch.bfloat16), "empty": torch.zeros(0)}
    save_file(tensors, tmp_path / "m.safetensors", metadata={"format": "pt", "other": "x"})
    stored = {item.spec.name: item for item in objects.put_tensors(tmp_path / "m.safetensors")}
    assert set(stored) == set(tensors)
    for name, tensor in tensors.items():
        blob = load_file(objects.path(stored[name].put.digest))
        assert list(blob) == [name]
        assert torch.equal(blob[name], tensor)


def test_same_tensor_in_different_files_has_one_digest(objects, tmp_path):
    shared = torch.randn(8, 8)
    save_file({"x": shared, "y": torch.zeros(3)}, tmp_path / "a.safetensors")
    save_file({"x": shared.clone()}, tmp_path / "b.safetensors", metadata={"foo": "bar"})
    a = {i.spec.name: i.put for i in objects.put_tensors(tmp_path / "a.safetensors")}
    b = {i.spec.name: i.put for i in objects.put_tensors(tmp_path / "b.safetensors")}
    assert a["x"].digest == b["x"].digest
    assert a["x"].written and not b["x"].written


def test_put_tensor_from_memory_matches_split_blob(objects, tmp_path):
    tensor = torch.randn(5, 7)
    save_file({"w": tensor}, tmp_path / "m.safetensors")
    [split] = objects.put_tensors(tmp_path / "m.safetensors")
    from_memory = objects.put_tensor("w", "F32", [5, 7], tensor.numpy().tobytes())
    assert from_memory.digest == split.put.digest and not from_memory.written


@pytest.mark.parametrize("chunk", [4096, 8192])
def test_a_tensor_of_many_write_chunks_is_copied_whole(objects, tmp_path, monkeypatch, chunk):
    """The split writes a tensor in chunks that end on chunk boundaries of the blob (whose
    header is not a multiple of the chunk): a first short chunk, whole ones, a short last."""
    from store.fs import fsops

    monkeypatch.setattr(fsops, "WRITE_CHUNK", chunk)
    tensors = {"big": torch.randn(3 * chunk + 123), "small": torch.randn(3)}
    save_file(tensors, tmp_path / "m.safetensors")
    stored = {item.spec.name: item for item in objects.put_tensors(tmp_path / "m.safetensors")}
    for name, tensor in tensors.items():
        assert torch.equal(load_file(objects.path(stored[name].put.digest))[name], tensor)
        assert stored[name].put.digest == objects.put_tensor(
            name, "F32", list(tensor.shape), tensor.numpy().tobytes()).digest


def test_a_source_rewritten_after_its_tensor_was_copied_gives_a_blob_named_by_its_own_bytes(
        objects, tmp_path, monkeypatch):
    """The digest is taken from the temp file, not the source: a source rewritten between the
    copy and the hash cannot give an object whose bytes are not its name's."""
    import store.tensors.tensorsplit

    path = tmp_path / "m.safetensors"
    save_file({"big": torch.zeros(64, 33), "small": torch.arange(3, dtype=torch.int32)}, path)
    real = store.tensors.tensorsplit.digest_fd

    def rewrite_then_hash(fd):
        with open(path, "r+b") as f:  # someone writes into the source meanwhile
            f.seek(-1, os.SEEK_END)
            f.write(b"\x01")
        return real(fd)

    monkeypatch.setattr(store.tensors.tensorsplit, "digest_fd", rewrite_then_hash)
    stored = objects.put_tensors(path)
    for item in stored:
        assert objects.rehash(item.put.digest) == item.put.digest
    assert list(objects.layout.tmp.iterdir()) == []


def test_a_source_truncated_under_the_copy_is_refused_and_leaves_nothing(objects, tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.zeros(64, 64), "b": torch.ones(64, 64)}, path)
    import store.tensors.tensorsplit

    real = store.tensors.tensorsplit.copy_tensor

    def truncate_then_copy(objects_, src, mapped, spec, source):
        if spec.name == "b":
            os.truncate(path, spec.start + 8)
        return real(objects_, src, mapped, spec, source)

    monkeypatch.setattr(store.tensors.tensorsplit, "copy_tensor", truncate_then_copy)
    with pytest.raises(SourceChangedError, match="m.safetensors"):
        objects.put_tensors(path)
    assert list(objects.layout.iter_object_paths()) == []
    assert list(objects.layout.tmp.iterdir()) == []


def test_wanted_tensors_are_stored_only_with_the_digest_expected(objects, tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.zeros(4), "b": torch.ones(4)}, path)
    digests = {i.spec.name: i.put.digest for i in ObjectStore(objects.layout).put_tensors(path)}
    for digest in digests.values():
        os.unlink(objects.path(digest))
    stored = objects.put_tensors(path, wanted={"a": digests["a"], "b": "0" * 64})
    assert {i.spec.name: i.put.written for i in stored} == {"a": True, "b": False}
    assert objects.exists(digests["a"]) and not objects.exists(digests["b"])
    assert list(objects.layout.tmp.iterdir()) == []


def test_missing_bytes_counts_only_absent_blobs(objects, tmp_path):
    save_file({"x": torch.randn(16), "y": torch.randn(32)}, tmp_path / "a.safetensors")
    total = objects.missing_bytes(tmp_path / "a.safetensors")
    assert total > 16 * 4 + 32 * 4
    objects.put_tensors(tmp_path / "a.safetensors")
    assert objects.missing_bytes(tmp_path / "a.safetensors") == 0


def test_read_bytes_verifies(objects):
    put = objects.put_bytes(b"payload")
    path = objects.path(put.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"pAyload")
    with pytest.raises(CorruptObjectError) as info:
        objects.read_bytes(put.digest)
    assert info.value.digest == put.digest and info.value.actual == digest_bytes(b"pAyload")
    path.unlink()
    with pytest.raises(ObjectMissingError):
        objects.read_bytes(put.digest)


def test_put_tensors_refuses_malformed_file_and_writes_nothing(objects, tmp_path):
    from store.errors import SafetensorsError

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      trailing")
    with pytest.raises(SafetensorsError):
        objects.put_tensors(bad)
    assert list(objects.layout.iter_object_paths()) == []
