"""Manifests: canonical bytes, strict decoding, what a version references."""

from __future__ import annotations

import msgspec
import pytest

from store.codec import encode_canonical
from store.errors import ManifestError
from store.layout import Layout
from store.manifest import (
    FileEntry, HubOrigin, Manifest, OriginFile, TensorEntry, TrainingInfo, decode_manifest,
    load_manifest, put_manifest,
)
from store.objects import ObjectStore
from store.tensors.tensorfile import canonical_header

D1, D2, D3 = "1" * 64, "2" * 64, "3" * 64


def sample(**kw) -> Manifest:
    fields = dict(
        architecture_type="qwen2", model_id="Qwen/Tiny", source="huggingface",
        created_at="2026-01-01T00:00:00Z", params=6,
        files={"config.json": FileEntry(digest=D1, size=10)},
        tensors={"w": TensorEntry(digest=D2, dtype="F32", shape=[2, 3], nbytes=24)},
        origin=HubOrigin(endpoint="https://huggingface.co", repo_id="Qwen/Tiny", revision="main",
                         commit="c" * 40, files={"model.safetensors": OriginFile(size=100, sha256="f" * 64,
                                                                                 tensors=["w"])}),
    )
    fields.update(kw)
    return Manifest(**fields)


def test_canonical_encoding_is_sorted_and_compact():
    data = encode_canonical(sample())
    assert b" " not in data
    keys = list(msgspec.json.decode(data).keys())
    assert keys == sorted(keys)
    assert encode_canonical(sample()) == data


def test_round_trip_through_the_store(tmp_path):
    layout = Layout(tmp_path)
    layout.create()
    objects = ObjectStore(layout)
    manifest = sample(training=TrainingInfo(step=3, optimizer={"optimizer.pt": FileEntry(digest=D3, size=5)}))
    digest = put_manifest(objects, manifest)
    assert load_manifest(objects, digest) == manifest
    assert put_manifest(objects, manifest) == digest  # same version, same identity


def test_unknown_fields_are_refused():
    data = encode_canonical(sample())[:-1] + b',"zzz":1}'
    with pytest.raises(ManifestError, match="unknown field `zzz`"):
        decode_manifest(D1, data)


def test_newer_manifest_format_is_refused():
    data = encode_canonical(sample(format=2))
    with pytest.raises(ManifestError, match="manifest format 2 is not 1"):
        decode_manifest(D1, data)


def test_referenced_objects_and_their_sizes():
    manifest = sample(training=TrainingInfo(step=1, optimizer={"opt": FileEntry(digest=D3, size=7)}))
    assert manifest.object_digests() == {D1, D2, D3}
    blob = len(canonical_header("w", "F32", [2, 3], 24)) + 24
    assert manifest.expected_sizes() == {D1: 10, D2: blob, D3: 7}
