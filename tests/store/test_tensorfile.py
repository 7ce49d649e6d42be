"""Strict safetensors parsing: every malformed header is refused with its own reason."""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path

import pytest

from store.errors import PickleWeightsError, SafetensorsError
from store.tensors.tensorfile import MAX_HEADER_BYTES, canonical_header, read_header


def write_raw(path: Path, header: dict, data: bytes, *, raw_header: bytes | None = None) -> Path:
    body = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return path


def two_tensors(tmp_path: Path, **override) -> Path:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "I8", "shape": [4], "data_offsets": [8, 12]},
    }
    header.update(override)
    return write_raw(tmp_path / "m.safetensors", header, bytes(range(12)))


def reason(path: Path) -> str:
    with pytest.raises(SafetensorsError) as info:
        read_header(path)
    return info.value.reason


def test_valid_file_gives_absolute_spans(tmp_path):
    path = two_tensors(tmp_path, __metadata__={"format": "pt"})
    header = read_header(path)
    assert [(t.name, t.dtype, t.shape, t.nbytes) for t in header.tensors] == [
        ("a", "F32", (2,), 8), ("b", "I8", (4,), 4)]
    assert header.tensors[0].start == header.data_start
    assert header.metadata == {"format": "pt"}


def test_real_safetensors_file_parses(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3, 5, dtype=torch.bfloat16), "e": torch.zeros(0)}, tmp_path / "x.safetensors")
    names = {t.name: (t.dtype, t.shape) for t in read_header(tmp_path / "x.safetensors").tensors}
    assert names == {"w": ("BF16", (3, 5)), "e": ("F32", (0,))}


def test_header_length_past_end_of_file(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    assert reason(path) == "header length 1000 runs past the end of the 10-byte file"


def test_huge_header_is_refused_before_reading_it(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", 200_000_000) + b"{")
    assert reason(path) == f"header length 200000000 exceeds the {MAX_HEADER_BYTES}-byte limit"


def test_shorter_than_length_prefix(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\x01\x02")
    assert reason(path) == "file is 2 bytes, shorter than the 8-byte header length"


def test_overlapping_offsets(tmp_path):
    path = two_tensors(tmp_path, b={"dtype": "I8", "shape": [4], "data_offsets": [4, 8]})
    assert reason(path) == "tensor 'b' overlaps the tensor before it"


def test_gap_between_tensors(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "I8", "shape": [2], "data_offsets": [10, 12]}}
    path = write_raw(tmp_path / "m.safetensors", header, bytes(12))
    assert reason(path) == "2 unused bytes before tensor 'b'"


def test_dtype_and_shape_not_matching_span(tmp_path):
    path = two_tensors(tmp_path, a={"dtype": "F32", "shape": [3], "data_offsets": [0, 8]})
    assert reason(path) == "tensor 'a': F32 [3] needs 12 bytes but data_offsets span 8"


def test_duplicate_tensor_names(tmp_path):
    raw = (b'{"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]},'
           b'"a":{"dtype":"I8","shape":[1],"data_offsets":[1,2]}}')
    path = write_raw(tmp_path / "m.safetensors", {}, b"\x00\x00", raw_header=raw)
    assert reason(path) == "tensor 'a' appears twice in the header"


def test_trailing_bytes(tmp_path):
    header = {"a": {"dtype": "I8", "shape": [2], "data_offsets": [0, 2]}}
    path = write_raw(tmp_path / "m.safetensors", header, b"\x00\x00extra")
    assert reason(path) == "5 trailing bytes after the last tensor"


def test_data_shorter_than_offsets(tmp_path):
    header = {"a": {"dtype": "I8", "shape": [4], "data_offsets": [0, 4]}}
    path = write_raw(tmp_path / "m.safetensors", header, b"\x00\x00")
    assert reason(path) == "tensor data runs 2 bytes past the end of the file"


def test_unknown_dtype(tmp_path):
    path = two_tensors(tmp_path, b={"dtype": "Q4", "shape": [4], "data_offsets": [8, 12]})
    assert reason(path) == "tensor 'b': unknown dtype 'Q4'"


def test_header_not_json(tmp_path):
    path = write_raw(tmp_path / "m.safetensors", {}, b"", raw_header=b"{nope")
    assert reason(path).startswith("header is not valid JSON")


def test_negative_and_boolean_shapes(tmp_path):
    path = two_tensors(tmp_path, b={"dtype": "I8", "shape": [-4], "data_offsets": [8, 12]})
    assert reason(path) == "tensor 'b': shape must be a list of non-negative integers"
    path = two_tensors(tmp_path, b={"dtype": "I8", "shape": [True], "data_offsets": [8, 12]})
    assert reason(path) == "tensor 'b': shape must be a list of non-negative integers"


def test_extra_keys_in_tensor_entry(tmp_path):
    path = two_tensors(tmp_path, b={"dtype": "I8", "shape": [4], "data_offsets": [8, 12], "x": 1})
    assert reason(path) == "tensor 'b': entry must have exactly dtype, shape, data_offsets"


def test_pickle_renamed_safetensors_is_named_as_pickle(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"weights": list(range(100))}, protocol=4))
    with pytest.raises(PickleWeightsError, match="pickle stream"):
        read_header(path)


def test_torch_zip_checkpoint_renamed_safetensors_is_named(tmp_path):
    path = tmp_path / "model.safetensors"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(PickleWeightsError, match="zip archive"):
        read_header(path)


def test_canonical_header_is_loadable_and_stable(tmp_path):
    from safetensors.numpy import load_file

    head = canonical_header("w", "I8", [2, 2], 4)
    assert len(head) % 8 == 0
    (tmp_path / "c.safetensors").write_bytes(head + b"\x01\x02\x03\x04")
    assert load_file(tmp_path / "c.safetensors")["w"].tolist() == [[1, 2], [3, 4]]
    assert canonical_header("w", "I8", (2, 2), 4) == head
    body = head[8:].rstrip(b" ")
    assert json.loads(body) == {"__metadata__": {"format": "pt"},
                                "w": {"data_offsets": [0, 4], "dtype": "I8", "shape": [2, 2]}}
