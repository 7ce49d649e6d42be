"""TensorStream: a safetensors file split into blobs as its bytes arrive, in any chunking.

The reference is ``ObjectStore.put_tensors`` on the same bytes (in another store): the
stream must yield the same blobs, digests and order, publish nothing before ``finish``,
and leave no temp file behind whatever happens.
"""

from __future__ import annotations

import json
import os
import stat
import struct

import pytest

from store.errors import ObjectMissingError, PickleWeightsError, SafetensorsError
from store.layout import Layout
from store.objects import ObjectStore
from store.tensors.tensorfile import read_header
from store.tensors.tensorstream import TensorStream

NAME = "org/repo@0123456789ab/model.safetensors"


def make_store(path) -> ObjectStore:
    layout = Layout(path)
    layout.create()
    return ObjectStore(layout)


@pytest.fixture
def objects(tmp_path) -> ObjectStore:
    return make_store(tmp_path / "ws")


def safetensors(tensors: list[tuple[str, str, list[int], bytes]], metadata=None) -> bytes:
    """A safetensors file with the tensors' data laid out in the order given."""
    header, offset = {}, 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(data for *_, data in tensors)


# Empty tensors first, between two others and last; a header listing them out of file order.
TENSORS = [
    ("empty.first", "F32", [0], b""),
    ("w", "F32", [4, 3], bytes(range(48))),
    ("between", "BF16", [2, 0], b""),
    ("b", "I64", [5], bytes(range(100, 140))),
    ("h", "BF16", [3, 5], bytes(range(200, 230))),
    ("empty.last", "U8", [0], b""),
]
FILE = safetensors(TENSORS, metadata={"format": "pt"})
HEADER_END = 8 + struct.unpack("<Q", FILE[:8])[0]


def feed(stream: TensorStream, data: bytes, cuts: list[int]) -> None:
    edges = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    for start, end in zip(edges, edges[1:]):
        if end > start:  # http_get writes no empty chunk (and nothing at all for an empty file)
            assert stream.write(data[start:end]) == end - start


def reference(tmp_path, data: bytes) -> dict:
    """What put_tensors makes of ``data``: name -> (digest, size, blob bytes), in header order."""
    store = make_store(tmp_path / "reference")
    source = tmp_path / "reference.safetensors"
    source.write_bytes(data)
    return {t.spec.name: (t.put.digest, t.put.size, store.path(t.put.digest).read_bytes())
            for t in store.put_tensors(source)}


def tensor_cuts() -> list[int]:
    """The start, middle and end of every tensor's bytes."""
    spans, offset = [], HEADER_END
    for *_, data in TENSORS:
        spans += [offset, offset + len(data) // 2, offset + len(data)]
        offset += len(data)
    return spans


CHUNKINGS = {
    "one byte at a time": list(range(len(FILE))),
    "inside the length field": [3],
    "right after the length field": [8],
    "inside the header": [8 + 5, HEADER_END // 2, HEADER_END - 1],
    "right after the header": [HEADER_END],
    "inside and between tensors": tensor_cuts(),
    "odd sizes": list(range(0, len(FILE), 37)),
    "all at once": [],
}


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_any_chunking_gives_the_blobs_put_tensors_gives(objects, tmp_path, chunking):
    expected = reference(tmp_path, FILE)
    stream = TensorStream(objects, len(FILE), NAME)
    feed(stream, FILE, CHUNKINGS[chunking])
    stored = stream.finish()
    assert [t.spec.name for t in stored] == list(expected)  # header order, as put_tensors
    for t in stored:
        digest, size, blob = expected[t.spec.name]
        assert (t.put.digest, t.put.size, t.put.written) == (digest, size, True)
        path = objects.path(digest)
        assert path.read_bytes() == blob and stat.S_IMODE(path.stat().st_mode) == 0o444
    stored_digests = sorted(d for d, _ in objects.layout.iter_object_paths())
    assert stored_digests == sorted(d for d, _, _ in expected.values())
    assert os.listdir(objects.layout.tmp) == []


def test_a_file_of_empty_tensors_only(objects, tmp_path):
    data = safetensors([("a", "F32", [0, 4], b""), ("b", "I8", [0], b"")])
    expected = reference(tmp_path, data)
    stream = TensorStream(objects, len(data), NAME)
    feed(stream, data, list(range(len(data))))
    assert {t.spec.name: t.put.digest for t in stream.finish()} == {n: d for n, (d, _, _) in expected.items()}


def test_blobs_wait_closed_and_unpublished_until_finish(objects, tmp_path):
    # More tensors than a Batch holds open (256): publishing must still go through in batches.
    tensors = [(f"t{i:03d}", "U8", [2], bytes([i % 256, 7])) for i in range(300)]
    data = safetensors(tensors)
    fds_before = len(os.listdir("/proc/self/fd"))
    stream = TensorStream(objects, len(data), NAME)
    feed(stream, data, list(range(0, len(data), 64)))
    assert len(os.listdir("/proc/self/fd")) == fds_before  # every temp blob closed once written
    assert list(objects.layout.iter_object_paths()) == []
    assert len(os.listdir(objects.layout.tmp)) == 300
    stored = stream.finish()
    assert len({t.put.digest for t in stored}) == 300
    assert len(list(objects.layout.iter_object_paths())) == 300 and os.listdir(objects.layout.tmp) == []


@pytest.mark.parametrize("gathered", [True, False], ids=["gathered", "streamed"])
def test_tensors_already_stored_are_not_written_again(objects, tmp_path, monkeypatch, gathered):
    import store.tensors.tensorstream as tensorstream

    if not gathered:  # every tensor as big as the ones that go to a temp blob as they arrive
        monkeypatch.setattr(tensorstream, "GATHER_BYTES", 0)
    source = tmp_path / "first.safetensors"
    source.write_bytes(safetensors(TENSORS[:3]))  # empty.first, w, between
    before = {t.put.digest: os.stat(objects.path(t.put.digest)).st_ino for t in objects.put_tensors(source)}
    stream = TensorStream(objects, len(FILE), NAME)
    middle_of_b = HEADER_END + 48 + 20
    feed(stream, FILE[:middle_of_b], [HEADER_END + 48])
    # b, under way: in memory, or in its temp blob; w's bytes are dropped either way
    assert len(os.listdir(objects.layout.tmp)) == (0 if gathered else 1)
    feed(stream, FILE[middle_of_b:], [])
    stored = {t.spec.name: t.put for t in stream.finish()}
    assert {n for n, put in stored.items() if not put.written} == {"empty.first", "w", "between"}
    assert {d: os.stat(objects.path(d)).st_ino for d in before} == before  # the same files, untouched
    assert os.listdir(objects.layout.tmp) == []


def test_a_stored_tensor_gathered_in_memory_never_touches_tmp(objects, tmp_path, monkeypatch):
    """A new revision that shares a tensor with a stored one writes nothing of that tensor."""
    source = tmp_path / "first.safetensors"
    source.write_bytes(safetensors([TENSORS[1]]))  # w
    objects.put_tensors(source)
    created = []
    original = objects.layout.new_temp
    monkeypatch.setattr(objects.layout, "new_temp", lambda prefix: created.append(prefix) or original(prefix))
    stream = TensorStream(objects, len(FILE), NAME)
    feed(stream, FILE, list(range(0, len(FILE), 7)))
    stored = {t.spec.name: t.put for t in stream.finish()}
    assert [n for n, put in stored.items() if not put.written] == ["w"]
    # one temp blob per tensor written (b, h and the three empty ones): w was hashed in
    # memory, found in the store, and dropped
    assert created == ["obj"] * (len(TENSORS) - 1)


def test_waiting_blobs_stay_young_for_gc_during_a_long_download(objects, monkeypatch):
    import store.tensors.tensorstream as tensorstream

    stream = TensorStream(objects, len(FILE), NAME)
    feed(stream, FILE[:HEADER_END + 48 + 8], [])  # w complete and waiting, b begun
    for path in objects.layout.tmp.iterdir():
        os.utime(path, (1, 1))  # as if written long ago
    monkeypatch.setattr(tensorstream, "REFRESH_S", 0.0)
    feed(stream, FILE[HEADER_END + 48 + 8:HEADER_END + 48 + 9], [])
    assert all(p.stat().st_mtime > 1_000_000 for p in objects.layout.tmp.iterdir())  # gc spares them
    feed(stream, FILE[HEADER_END + 48 + 9:], [])
    assert len(stream.finish()) == len(TENSORS)


def test_abort_removes_every_temp_blob(objects):
    stream = TensorStream(objects, len(FILE), NAME)
    feed(stream, FILE[:-10], [HEADER_END + 50])  # w complete (waiting), b and h under way
    assert os.listdir(objects.layout.tmp)
    stream.abort()
    assert os.listdir(objects.layout.tmp) == [] and list(objects.layout.iter_object_paths()) == []


def test_restart_from_byte_zero_starts_clean(objects, tmp_path):
    stream = TensorStream(objects, len(FILE), NAME)
    feed(stream, FILE[:HEADER_END + 60], [HEADER_END + 10])
    stream.restart()  # what a server ignoring Range makes the download do
    assert os.listdir(objects.layout.tmp) == []
    feed(stream, FILE, [5, HEADER_END + 3])
    expected = reference(tmp_path, FILE)
    assert {t.spec.name: t.put.digest for t in stream.finish()} == {n: d for n, (d, _, _) in expected.items()}
    assert os.listdir(objects.layout.tmp) == []


def test_more_bytes_than_announced_are_refused(objects):
    stream = TensorStream(objects, len(FILE), NAME)
    with pytest.raises(SafetensorsError, match=f"more than the {len(FILE)} bytes announced arrived"):
        feed(stream, FILE + b"x", [])
    assert os.listdir(objects.layout.tmp) == []


def test_a_temp_blob_removed_before_publishing_fails_cleanly(objects):
    stream = TensorStream(objects, len(FILE), NAME)
    feed(stream, FILE, [])
    victim = sorted(objects.layout.tmp.iterdir())[0]
    victim.unlink()  # e.g. gc with a grace period shorter than the download
    with pytest.raises(ObjectMissingError, match="removed while this command ran"):
        stream.finish()
    assert os.listdir(objects.layout.tmp) == []


# --- header errors: the same as read_header's, raised by finish, with nothing written ------------

BAD = {
    "empty file": (b"", SafetensorsError, "file is 0 bytes, shorter than the 8-byte header length"),
    "pickle stream": (b"\x80\x04\x95pickle", PickleWeightsError, "holds pickle weights (a pickle stream)"),
    "zip archive": (b"PK\x03\x04" + bytes(60), PickleWeightsError, "(a zip archive: PyTorch's torch.save"),
    "shorter than 8 bytes": (b"\x01\x02", SafetensorsError, "file is 2 bytes, shorter than the 8-byte"),
    "header past the end": (struct.pack("<Q", 1000) + b"{}", SafetensorsError,
                            "header length 1000 runs past the end of the 10-byte file"),
    "empty header": (struct.pack("<Q", 0) + b"xx", SafetensorsError, "header is not a JSON object"),
    "not JSON": (struct.pack("<Q", 8) + b"{nope   ", SafetensorsError, "header is not valid JSON"),
    "gap before a tensor": (struct.pack("<Q", 64) + b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}'
                            .ljust(64) + b"abc", SafetensorsError, "1 unused bytes before tensor 'a'"),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("chunk", [1, 1 << 20])
def test_a_bad_header_is_raised_by_finish_and_nothing_is_written(objects, tmp_path, case, chunk):
    data, error, message = BAD[case]
    source = tmp_path / "bad.safetensors"
    source.write_bytes(data)
    with pytest.raises(error) as by_read_header:
        read_header(source, name=NAME)
    stream = TensorStream(objects, len(data), NAME)
    feed(stream, data, list(range(0, len(data), chunk)))  # write never raises it
    assert os.listdir(objects.layout.tmp) == []
    with pytest.raises(error) as by_stream:
        stream.finish()
    assert str(by_stream.value) == str(by_read_header.value)
    assert message in str(by_stream.value) and NAME in str(by_stream.value)
    assert list(objects.layout.iter_object_paths()) == []


def test_on_header_runs_before_any_blob_and_its_error_is_deferred(objects):
    seen = []

    def check(header):
        seen.append((sorted(s.name for s in header.tensors), os.listdir(objects.layout.tmp)))
        raise SafetensorsError(NAME, "tensor 'w' is also in model-00001-of-00002.safetensors")

    stream = TensorStream(objects, len(FILE), NAME, on_header=check)
    feed(stream, FILE, [HEADER_END, HEADER_END + 20])
    assert seen == [(sorted(n for n, *_ in TENSORS), [])] and os.listdir(objects.layout.tmp) == []
    with pytest.raises(SafetensorsError, match="tensor 'w' is also in model-00001-of-00002"):
        stream.finish()
    assert list(objects.layout.iter_object_paths()) == []
