"""A local import is checked like a Hub import: every file it reads is a plain file of the
folder, the weights are complete, and they are the tensors config.json implies. Each bad
source is one clear error naming the file or the first wrong tensor, and nothing is
registered (the store may keep orphan blobs for gc, never a registry entry)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from registry.ingest.folder import import_folder
from registry.errors import ModelLoadError
from store.errors import SourceError
from tests.fixtures.qwen_family import family_model


def refused(workspace, src, match, **kwargs):
    with pytest.raises((SourceError, ModelLoadError), match=match) as info:
        import_folder(workspace, src, name="m", **kwargs)
    assert workspace.read_registry().models == {}
    return info.value


def test_a_tokenizer_linked_outside_the_folder_is_refused_unless_links_are_followed(workspace, tiny_model, tmp_path):
    src = tiny_model()
    outside = tmp_path / "elsewhere.json"
    shutil.move(src / "tokenizer.json", outside)
    os.symlink(outside, src / "tokenizer.json")
    error = refused(workspace, src, "tokenizer.json is a link to .*elsewhere.json, outside the folder")
    assert "--follow-links" in error.hint
    result = import_folder(workspace, src, name="m", follow_links=True)
    assert result.manifest.files["tokenizer.json"].size == outside.stat().st_size


@pytest.mark.parametrize("make, match", [
    (lambda p: os.symlink(p.parent / "gone.json", p), "tokenizer.json is a link to .*gone.json, which does not exist"),
    (lambda p: (os.symlink(p.parent / "b.json", p), os.symlink(p, p.parent / "b.json")), "is a link that loops"),
    (lambda p: os.mkfifo(p), "tokenizer.json is a FIFO"),
], ids=["dangling", "loop", "fifo"])
def test_a_tokenizer_that_is_no_plain_file_is_refused(workspace, tiny_model, make, match):
    src = tiny_model()
    (src / "tokenizer.json").unlink()
    make(src / "tokenizer.json")
    done = threading.Event()
    threading.Timer(60, lambda: None if done.is_set() else os._exit(3)).start()  # a FIFO read would hang
    try:
        refused(workspace, src, match)
    finally:
        done.set()


def test_an_hf_cache_snapshot_of_links_into_its_blobs_imports_with_its_commit(workspace, tiny_model, tmp_path):
    src = tiny_model()
    repo = tmp_path / "hub" / "models--Qwen--Tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for i, f in enumerate(sorted(src.iterdir())):
        shutil.copy(f, repo / "blobs" / f"blob{i}")
        os.symlink(f"../../blobs/blob{i}", snapshot / f.name)
    result = import_folder(workspace, snapshot, name="m")
    assert (result.manifest.origin.hub_repo, result.manifest.origin.hub_commit) == ("Qwen/Tiny", commit)
    plain = import_folder(workspace, src, name="plain")
    assert plain.manifest.tensors == result.manifest.tensors
    assert plain.manifest.origin.hub_repo is None


def test_a_sharded_folder_missing_a_shard_and_its_index_is_refused(workspace, tiny_model):
    src = tiny_model(shards=3)
    (src / "model.safetensors.index.json").unlink()
    (src / "model-00002-of-00003.safetensors").unlink()
    refused(workspace, src, "has 2 of the 3 shards of model and no index: model-00002-of-00003.safetensors "
                            "is missing")


def test_a_config_that_does_not_match_the_weights_names_the_first_wrong_tensor(workspace, tiny_model):
    src = tiny_model()
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "hidden_size": 100000}))
    refused(workspace, src, r"tensor lm_head.weight|tensor model.embed_tokens.weight has shape \[512, 32\], "
                            r"config.json implies \[512, 100000\]")


def test_a_tensor_the_config_does_not_describe_is_refused(workspace, tiny_model):
    from safetensors.torch import load_file, save_file

    src = tiny_model()
    tensors = load_file(src / "model.safetensors")
    tensors["model.layers.9.mlp.up_proj.weight"] = tensors["model.norm.weight"].clone()
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    refused(workspace, src, r"tensor model.layers.9.mlp.up_proj.weight \[32\] is not part of the model")


def test_a_member_without_a_closed_form_is_checked_on_the_meta_device(workspace, tmp_path):
    src = family_model("qwen3_5", tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    config["text_config"]["intermediate_size"] = 4 * config["text_config"]["intermediate_size"]
    (src / "config.json").write_text(json.dumps(config))
    refused(workspace, src, r"model.language_model.layers.0.mlp.down_proj.weight has shape \[64, 128\], "
                            r"config.json implies \[64, 512\]")


def test_load_check_on_request_for_a_local_import(workspace, tmp_path):
    result = import_folder(workspace, family_model("qwen2_vl", tmp_path / "src"), name="m", load_check=True)
    assert workspace.read_registry().models["m"].manifest == result.manifest_digest


def test_the_cli_checks_a_member_without_a_closed_form_in_the_worker(root, tmp_path):
    """The command line has no torch loaded: the meta-device build runs in the load-check worker."""
    import subprocess
    import sys

    src = family_model("qwen3_next", tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "moe_intermediate_size": 48}))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[3] / "main.py"), "--root",
                          str(root), "import-model", str(src), "--name", "m"], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith(
        f"error: {src}: tensor model.layers.0.mlp.experts.0.down_proj.weight has shape [64, 32], "
        "config.json implies [64, 48]")
