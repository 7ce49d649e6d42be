"""The load check: a stored model loads in the worker process and gives finite logits."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from registry import smoke
from registry.importer import import_folder
from store.errors import ModelLoadError


def stored(workspace, folder):
    return import_folder(workspace, folder, name="m").manifest


def test_a_stored_model_passes_and_leaves_no_staging(workspace, tiny_model):
    check = smoke.check_loads(workspace, stored(workspace, tiny_model("qwen3_moe")))
    assert check.ran and check.detail == ("loads as Qwen3MoeForCausalLM (float32); forward pass on a few tokens: "
                                          "finite logits")
    assert os.listdir(workspace.layout.tmp) == []


def test_non_finite_logits_fail(workspace, tiny_model):
    from safetensors.torch import load_file, save_file

    folder = tiny_model()
    tensors = load_file(folder / "model.safetensors")
    tensors["model.norm.weight"].fill_(float("nan"))
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="non-finite logits"):
        smoke.check_loads(workspace, stored(workspace, folder))
    assert os.listdir(workspace.layout.tmp) == []


def test_a_model_too_big_for_memory_is_not_loaded(workspace, tiny_model, monkeypatch):
    monkeypatch.setattr(smoke, "available_memory", lambda: 1 << 20)
    check = smoke.check_loads(workspace, stored(workspace, tiny_model()))
    assert not check.ran and check.detail.startswith("skipped: loading needs about 1.1 GB of memory, 1.0 MB")


def test_a_worker_dying_mid_request_is_a_clear_failure():
    worker = smoke._Worker()
    worker.proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline(); sys.exit(3)"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with pytest.raises(ModelLoadError) as info:
        worker.ask({"folder": "/nowhere", "model_id": "org/m"}, "org/m", "qwen2")
    assert str(info.value) == ("org/m does not pass the load check: the process loading the model died "
                               "(exit code 3); set MODELSTORE_DEBUG=1 to see its output; nothing was "
                               "registered; the checkpoint may not match its config")
    assert worker.proc is None
