"""registry.json: atomic writes, the previous generation, strict reading."""

from __future__ import annotations

import json

import pytest

from registry.registry_file import (
    RegistryEntry, empty_registry, parse_registry, previous_path, read_registry, write_registry,
)
from registry.errors import RegistryError

DIGEST = "a" * 64


def entry(name: str) -> RegistryEntry:
    return RegistryEntry(model_name=name, model_id="m", architecture_type="qwen2",
                         local_path=f"models/{name}", source="local",
                         created_at="2026-01-01T00:00:00Z", manifest=DIGEST)


def write(tmp_path, *names):
    doc = empty_registry()
    for name in names:
        doc.models[name] = entry(name)
    path = tmp_path / "models" / "registry.json"
    write_registry(doc, path, tmp_path / "tmp")
    return path


def test_round_trip_and_schema(tmp_path):
    path = write(tmp_path, "b", "a")
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 1 and list(raw["models"]) == ["a", "b"]
    assert read_registry(path).models["a"] == entry("a")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_previous_generation_is_kept(tmp_path):
    path = write(tmp_path, "a")
    first = path.read_bytes()
    write(tmp_path, "a", "b")
    assert previous_path(path).read_bytes() == first
    assert set(read_registry(path).models) == {"a", "b"}


def test_a_damaged_registry_never_replaces_a_good_previous_generation(tmp_path):
    path = write(tmp_path, "a")
    write(tmp_path, "a", "b")
    good_prev = previous_path(path).read_bytes()
    path.write_text("{garbage")
    write(tmp_path, "c")
    assert previous_path(path).read_bytes() == good_prev


def test_absent_registry_is_empty(tmp_path):
    assert read_registry(tmp_path / "nope.json").models == {}


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "the file is empty"),
    (b'{"schema_version": 1, "models": {', "not valid JSON"),
    (b"[1, 2]", "the top level is not a JSON object"),
    (b'{"schema_version": 1, "models": {}, "extra": 1}', "Object contains unknown field `extra`"),
    (b'{"schema_version": 2, "models": {}}', "schema version 2 is newer than this modelstore reads (1)"),
    (b'{"schema_version": 0, "models": {}}', "unknown schema version 0"),
])
def test_damaged_registries_are_refused_with_the_reason(tmp_path, content, reason):
    with pytest.raises(RegistryError) as info:
        parse_registry(tmp_path / "registry.json", content)
    assert reason in info.value.reason


def test_duplicate_names_are_an_error_not_last_wins(tmp_path):
    one = json.dumps({"model_name": "a", "model_id": "m", "architecture_type": "qwen2",
                      "local_path": "models/a", "source": "local", "created_at": "t", "manifest": DIGEST})
    data = f'{{"schema_version": 1, "models": {{"a": {one}, "a": {one}}}}}'.encode()
    with pytest.raises(RegistryError, match="duplicate key 'a'"):
        parse_registry(tmp_path / "registry.json", data)


def test_entry_naming_another_model_is_refused(tmp_path):
    doc = empty_registry()
    doc.models["a"] = entry("b")
    path = tmp_path / "registry.json"
    write_registry(doc, path, tmp_path / "tmp")
    with pytest.raises(RegistryError, match="entry 'a' names itself 'b'"):
        read_registry(path)
