"""Importing local folders: the store, the view contract, dedup, and refusals that change nothing."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest
import torch

from registry.ingest.folder import import_folder
from registry.report import RecordingReporter
from adapters.errors import UnsupportedArchitectureError
from registry.errors import InvalidNameError, ModelExistsError
from store.errors import PickleWeightsError, SafetensorsError, SourceError
from store.manifest import LocalOrigin
from tests.conftest import settled, tree_digest


def store_snapshot(workspace) -> set[str]:
    """Every path under the workspace: proof that a refused import changed nothing."""
    return {str(p.relative_to(workspace.root)) for p in workspace.root.rglob("*")}


def logits(folder, tokens):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        return model(tokens).logits


@pytest.mark.parametrize("model_type", ["qwen2", "qwen3"])
def test_view_loads_with_stock_transformers_bit_identically(workspace, tiny_model, model_type):
    source = tiny_model(model_type)
    result = import_folder(workspace, source, name="tiny")
    tokens = torch.tensor([[1, 5, 9, 200, 3, 7]])
    assert torch.equal(logits(workspace.root / "models" / "tiny", tokens), logits(source, tokens))
    assert result.entry.local_path == "models/tiny"


def test_sharded_bf16_checkpoint_is_split_and_loads(workspace, tiny_model):
    source = tiny_model("qwen2", shards=3, dtype="bfloat16")
    result = import_folder(workspace, source, name="sharded")
    assert {t.dtype for t in result.manifest.tensors.values()} == {"BF16"}
    assert len(result.manifest.origin.files) >= 3
    tokens = torch.tensor([[4, 8, 15, 16, 23, 42]])
    view_logits = logits(workspace.root / "models" / "sharded", tokens)
    assert view_logits.dtype == torch.bfloat16
    assert torch.equal(view_logits, logits(source, tokens))


def test_view_is_relative_symlinks_and_generated_files(workspace, tiny_model):
    source = tiny_model()
    result = import_folder(workspace, source, name="tiny")
    view = workspace.root / "models" / "tiny"
    for name, tensor in result.manifest.tensors.items():
        link = view / f"tensor-{name}.safetensors"
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert link.resolve() == workspace.objects.path(tensor.digest)
    assert (view / "config.json").resolve() == workspace.objects.path(result.manifest.files["config.json"].digest)
    index = json.loads((view / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(result.manifest.tensors)
    metadata = json.loads((view / "metadata.json").read_text())
    assert metadata["model_name"] == "tiny" and metadata["manifest"] == result.manifest_digest
    assert metadata["model_size"] == result.manifest.params > 0
    assert all(f"_comment_{k}" in metadata for k in ("model_name", "model_id", "source", "architecture_type",
                                                      "created_at", "license", "model_size", "file_size",
                                                      "fine_tuned_from"))
    # The workspace can move: relative links keep working.
    moved = workspace.root.parent / "moved"
    shutil.move(workspace.root, moved)
    assert (moved / "models" / "tiny" / "config.json").read_bytes() == (source / "config.json").read_bytes()


def test_manifest_records_local_origin_and_every_file(workspace, tiny_model):
    source = tiny_model()
    result = import_folder(workspace, source, name="tiny")
    manifest = result.manifest
    assert manifest.source == "local" and manifest.architecture_type == "qwen2"
    assert set(manifest.files) == {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}
    assert isinstance(manifest.origin, LocalOrigin) and manifest.origin.path == str(source)
    assert manifest.origin.files["model.safetensors"].tensors == sorted(manifest.tensors)
    assert workspace.manifest(result.manifest_digest) == manifest


def test_source_folder_is_never_modified(workspace, tiny_model):
    source = tiny_model()
    before = tree_digest(source)
    modes = {p: p.stat().st_mode for p in source.iterdir()}
    import_folder(workspace, source, name="tiny")
    assert tree_digest(source) == before
    assert {p: p.stat().st_mode for p in source.iterdir()} == modes


def test_reimport_under_second_name_writes_only_a_manifest(workspace, tiny_model):
    source = tiny_model()
    import_folder(workspace, source, name="one")
    before = {d for d, _ in workspace.layout.iter_object_paths()}
    second = import_folder(workspace, source, name="two")
    after = {d for d, _ in workspace.layout.iter_object_paths()}
    # Only the manifest can be new (and not even that within the same second: same bytes).
    assert after - before <= {second.manifest_digest}
    assert second.stats.new_objects == 0 and second.stats.reused_objects > 0


def test_reimport_of_a_settled_folder_does_not_read_its_weights_again(workspace, tiny_model, monkeypatch):
    """The store remembers the files it split (store.sourcecache): an unchanged source is
    only checked against the store, and the result is the same model version."""
    source = settled(tiny_model())
    first = import_folder(workspace, source, name="one")

    def refuse(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(workspace.objects, "put_tensors", refuse)
    monkeypatch.setattr(workspace.objects, "put_file", refuse)
    reporter = RecordingReporter()
    second = import_folder(workspace, source, name="two", reporter=reporter)
    assert second.manifest.same_version(first.manifest)
    assert ("weights", "26 tensors from 1 file(s), 140.4 KB; 1 file(s) unchanged since the last import, "
            "not read again") in reporter.lines
    assert second.stats.new_objects == 0 and second.stats.reused_objects == first.stats.new_objects


def test_reimport_after_a_tensor_is_edited_in_place_stores_the_edit(workspace, tiny_model):
    source = settled(tiny_model())
    first = import_folder(workspace, source, name="one")
    weights = source / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the file's last tensor; size and names unchanged
    weights.write_bytes(bytes(data))
    second = import_folder(workspace, source, name="two")
    changed = {n for n, t in second.manifest.tensors.items() if t.digest != first.manifest.tensors[n].digest}
    assert len(changed) == 1 and second.stats.new_objects == 1  # that tensor alone
    digest = second.manifest.tensors[changed.pop()].digest
    assert workspace.objects.rehash(digest) == digest


def test_status_lines_name_each_component(workspace, tiny_model):
    reporter = RecordingReporter()
    import_folder(workspace, tiny_model(), name="tiny", reporter=reporter)
    components = [c for c, _ in reporter.lines]
    assert components[:3] == ["weights", "config", "tokenizer"]


def test_pickle_only_folder_is_refused_and_nothing_is_unpickled(workspace, tmp_path, tiny_model):
    source = tiny_model()
    (source / "model.safetensors").unlink()
    marker = tmp_path / "PWNED"
    (source / "pytorch_model.bin").write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(PickleWeightsError, match="pytorch_model.bin holds pickle weights"):
        import_folder(workspace, source, name="evil")
    assert not marker.exists()
    assert store_snapshot(workspace) == set()


def test_pickle_renamed_safetensors_is_refused(workspace, tmp_path, tiny_model):
    source = tiny_model()
    marker = tmp_path / "PWNED"
    (source / "model.safetensors").write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(PickleWeightsError, match="a pickle stream"):
        import_folder(workspace, source, name="evil")
    assert not marker.exists()
    assert store_snapshot(workspace) == set()


def test_pickle_next_to_safetensors_is_skipped_and_said(workspace, tiny_model, tmp_path):
    source = tiny_model()
    marker = tmp_path / "PWNED"
    (source / "pytorch_model.bin").write_bytes(pickle.dumps(_Exploit(str(marker))))
    (source / "modeling_evil.py").write_text("raise SystemExit('never run')")
    reporter = RecordingReporter()
    result = import_folder(workspace, source, name="tiny", reporter=reporter)
    assert result.skipped["pytorch_model.bin"] == "pickle weights are never loaded"
    assert result.skipped["modeling_evil.py"] == "remote code is never run"
    assert ("warning", "skipped pytorch_model.bin: pickle weights are never loaded") in reporter.lines
    assert not marker.exists()


def test_malformed_safetensors_changes_nothing(workspace, tiny_model):
    source = tiny_model()
    data = bytearray((source / "model.safetensors").read_bytes())
    (source / "model.safetensors").write_bytes(bytes(data) + b"junk")
    with pytest.raises(SafetensorsError, match="4 trailing bytes after the last tensor"):
        import_folder(workspace, source, name="tiny")
    assert store_snapshot(workspace) == set()


def test_unsupported_architecture_lists_supported_ones(workspace, tiny_model):
    source = tiny_model()
    config = json.loads((source / "config.json").read_text())
    config["model_type"] = "llama"
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitectureError) as info:
        import_folder(workspace, source, name="tiny")
    assert "unsupported architecture 'llama'" in str(info.value)
    assert ("qwen2, qwen2_5_vl, qwen2_moe, qwen2_vl, qwen3, qwen3_5, qwen3_5_moe, qwen3_5_moe_text, "
            "qwen3_5_text, qwen3_moe, qwen3_next, qwen3_vl, qwen3_vl_moe") in str(info.value)
    assert store_snapshot(workspace) == set()


def test_missing_folder_and_missing_config(workspace, tmp_path, tiny_model):
    with pytest.raises(SourceError, match="does not exist"):
        import_folder(workspace, tmp_path / "nowhere", name="x")
    source = tiny_model()
    (source / "config.json").unlink()
    with pytest.raises(SourceError, match="has no config.json"):
        import_folder(workspace, source, name="x")


def test_index_naming_a_missing_shard_is_refused(workspace, tiny_model):
    source = tiny_model(shards=2)
    (source / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(SourceError, match="names missing shard 'model-00002-of-00002.safetensors'"):
        import_folder(workspace, source, name="x")


def test_invalid_name_is_refused_before_any_filesystem_call(workspace, tiny_model):
    with pytest.raises(InvalidNameError):
        import_folder(workspace, tiny_model(), name="../escape")
    assert store_snapshot(workspace) == set()


def test_name_is_derived_from_the_folder(workspace, tiny_model):
    result = import_folder(workspace, tiny_model(name="My Model v2"))
    assert result.entry.model_name == "My-Model-v2"


def test_conflicts_cancel_overwrite_rename(workspace, tiny_model):
    source = tiny_model()
    first = import_folder(workspace, source, name="tiny")
    other = tiny_model("qwen3", name="other")
    before = set(workspace.layout.iter_object_paths())
    with pytest.raises(ModelExistsError):
        import_folder(workspace, other, name="tiny")
    assert set(workspace.layout.iter_object_paths()) == before  # refused before writing
    renamed = import_folder(workspace, other, name="tiny", on_conflict="rename")
    assert renamed.entry.model_name == "tiny-2"
    replaced = import_folder(workspace, other, name="tiny", on_conflict="overwrite")
    assert workspace.read_registry().models["tiny"].manifest == replaced.manifest_digest != first.manifest_digest
    assert json.loads((workspace.root / "models/tiny/config.json").read_text())["model_type"] == "qwen3"


def test_interactive_conflict_choice_is_asked_once_before_writing(workspace, tiny_model):
    import_folder(workspace, tiny_model(), name="tiny")
    asked = []
    result = import_folder(workspace, tiny_model("qwen3", name="other"), name="tiny",
                           on_conflict=lambda n: asked.append(n) or "rename")
    assert asked == ["tiny"] and result.entry.model_name == "tiny-2"


def test_names_differing_only_by_case_are_refused(workspace, tiny_model):
    source = tiny_model()
    import_folder(workspace, source, name="Tiny")
    with pytest.raises(InvalidNameError, match="differs only by case from the registered model 'Tiny'"):
        import_folder(workspace, source, name="tiny")


def test_unregistered_folder_in_models_is_not_overwritten(workspace, tiny_model):
    squatter = workspace.root / "models" / "tiny"
    squatter.mkdir(parents=True)
    (squatter / "notes.txt").write_text("mine")
    with pytest.raises(ModelExistsError, match="exists but is not registered"):
        import_folder(workspace, tiny_model(), name="tiny")
    assert (squatter / "notes.txt").read_text() == "mine"


class _Exploit:
    """A pickle payload that would create a marker file if it were ever unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("planted", [".modelstore/objects", ".modelstore/tmp", "models"])
def test_planted_symlink_in_the_store_is_never_written_through(workspace, tiny_model, tmp_path, planted):
    from store.errors import UnsafePathError

    outside = tmp_path / "outside"
    outside.mkdir()
    workspace.ensure_store()
    link = workspace.root / planted
    shutil.rmtree(link)
    link.symlink_to(outside)
    with pytest.raises(UnsafePathError, match="is a symbolic link to"):
        import_folder(workspace, tiny_model(), name="tiny")
    assert list(outside.iterdir()) == []


def test_planted_symlink_as_object_fan_directory_is_refused(workspace, tiny_model, tmp_path):
    from store.digest import digest_file
    from store.errors import UnsafePathError

    source = tiny_model()
    workspace.ensure_store()
    outside = tmp_path / "outside"
    outside.mkdir()
    config_digest = digest_file(source / "config.json")
    (workspace.layout.objects / config_digest[:2]).symlink_to(outside)
    with pytest.raises(UnsafePathError):
        import_folder(workspace, source, name="tiny")
    assert list(outside.iterdir()) == []


def test_reimporting_the_same_folder_under_its_name_is_a_no_op(workspace, tiny_model):
    source = tiny_model()
    first = import_folder(workspace, source, name="tiny")
    registry_before = workspace.registry_path.read_bytes()
    again = import_folder(workspace, source, name="tiny")
    assert again.entry == first.entry
    assert workspace.registry_path.read_bytes() == registry_before


def test_same_folder_changed_since_is_still_a_conflict(workspace, tiny_model):
    source = tiny_model()
    import_folder(workspace, source, name="tiny")
    (source / "generation_config.json").write_text('{"do_sample": true}')
    with pytest.raises(ModelExistsError):
        import_folder(workspace, source, name="tiny")
