"""The load check: a stored model loads in the worker process and gives finite logits."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from registry.check import loadcheck as smoke
from registry.ingest.folder import import_folder
from registry.errors import ModelLoadError


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


def test_the_staging_view_hard_links_the_blobs(workspace, tiny_model):
    manifest = stored(workspace, tiny_model())
    staging = smoke._staging_view(workspace, manifest, {})
    try:
        config = staging / "config.json"
        assert not config.is_symlink()
        assert os.stat(config).st_ino == os.stat(workspace.objects.path(manifest.files["config.json"].digest)).st_ino
    finally:
        smoke.fsops.rmtree(staging)
    assert workspace.objects.rehash(manifest.files["config.json"].digest) == manifest.files["config.json"].digest


def test_a_blob_that_cannot_be_hard_linked_gets_a_symlink(tmp_path):
    target, link = tmp_path / "gone", tmp_path / "link"
    assert smoke._link_blob(target, link, may_symlink=True)  # link() fails (no such file): a dangling symlink
    assert link.is_symlink() and os.readlink(link) == str(target)


def test_a_preload_message_gets_no_reply(tmp_path):
    worker = smoke._Worker()
    try:
        worker.start()
        worker.start("qwen2")  # the architecture, once known: its code is imported ahead
        assert worker.preloaded == {"qwen2"}
        # The first line back answers the request, not the preload: an empty folder fails to load.
        reply = worker.ask({"folder": str(tmp_path), "model_id": "org/m", "model_type": "qwen2"}, "org/m", "qwen2")
        assert reply == {"ok": False, "reason": "loading failed: unsupported architecture no model_type for "
                                                "this adapter"}
    finally:
        worker.stop()


def test_blobs_that_cannot_be_hard_linked_are_published_before_the_check(workspace, tiny_model, tmp_path,
                                                                         monkeypatch):
    """A filesystem (or a store someone else owns) refusing hard links: the waiting blobs
    are published first and the staging view symlinks them, as the real view does."""
    from registry.workspace import Workspace
    from store.tensors.tensorstream import TensorStream

    folder = tiny_model()
    manifest = stored(Workspace.open(tmp_path / "other"), folder)
    for relpath in manifest.files:
        workspace.objects.put_bytes((folder / relpath).read_bytes())
    data = (folder / "model.safetensors").read_bytes()
    stream = TensorStream(workspace.objects, len(data), "model.safetensors")
    stream.write(data)
    stream.stored()
    assert stream.awaiting() and not any(workspace.objects.exists(d) for d in stream.awaiting())

    def refuse(src, dst):
        raise PermissionError(1, "Operation not permitted", str(dst))

    monkeypatch.setattr(smoke.fsops, "hardlink", refuse)
    check = smoke.check_loads(workspace, manifest, unpublished=stream)
    assert check.ran and check.detail.startswith("loads as Qwen2ForCausalLM")
    assert all(workspace.objects.rehash(t.digest) == t.digest for t in manifest.tensors.values())
    assert os.listdir(workspace.layout.tmp) == []
