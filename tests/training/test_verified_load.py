"""Loads by name refuse what they must not use: a blob whose bytes changed (verified against
its digest on every load), and a view something was written into (a link replaced by a file,
a ``model.safetensors`` saved into it). One break per test; the exact error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.blobs import BlobChangedError
from registry.ingest.folder import import_folder
from registry.view_state import ViewWrittenError, refuse_written_view
from tests.training.runs import import_base, run_config
from training.models import load_model
from training.train import train

REPO = Path(__file__).resolve().parents[2]
TENSOR = "model.layers.0.mlp.up_proj.weight"  # a blob of this model alone (random, seed-dependent)
FIX = "run `python main.py validate-registry --fix`"


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), "--root", str(root), *args],
                          capture_output=True, text=True, cwd=str(root), env={**os.environ}, timeout=300)


@pytest.fixture
def qwen(workspace, tiny_model):
    import_folder(workspace, tiny_model("qwen2"), name="qwen")
    return workspace


def digest_of(ws, name: str, *, tensor: str | None = None, file: str | None = None) -> str:
    manifest = ws.manifest(ws.read_registry().models[name].manifest)
    return manifest.tensors[tensor].digest if tensor else manifest.files[file].digest


def write_as_root(path: Path, change) -> None:
    """What root's write through a view's link does to the blob (root ignores 0444)."""
    mode = path.stat().st_mode
    path.chmod(mode | 0o200)
    data = bytearray(path.read_bytes())
    change(data)
    path.write_bytes(bytes(data))
    path.chmod(mode)


def flip_last_bit(data: bytearray) -> None:
    data[-1] ^= 0x01  # past the header: the tensor's last element


def test_a_flipped_bit_in_a_tensor_blob_stops_generate(qwen, root):
    digest = digest_of(qwen, "qwen", tensor=TENSOR)
    blob = qwen.objects.path(digest)
    write_as_root(blob, flip_last_bit)
    actual = qwen.objects.rehash(digest)
    result = run(root, "generate", "qwen", "--prompt", "hi", "--max-new-tokens", "2")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (f"error: model 'qwen': tensor '{TENSOR}' no longer matches what the store holds "
                             f"(object {digest[:12]} now hashes to {actual[:12]}; {blob}); nothing was loaded; "
                             f"{FIX} to quarantine the object and restore it\n")


def test_a_flipped_bit_stops_a_load_and_a_fine_tune(workspace, tiny_model):
    import_base(workspace, tiny_model)
    digest = digest_of(workspace, "base", tensor=TENSOR)
    write_as_root(workspace.objects.path(digest), flip_last_bit)
    with pytest.raises(BlobChangedError) as caught:
        load_model(workspace, "base")
    assert (caught.value.model, caught.value.item, caught.value.digest) == ("base", f"tensor '{TENSOR}'", digest)
    with pytest.raises(BlobChangedError, match=f"^model 'base': tensor '{TENSOR}' no longer matches"):
        train(workspace, run_config(model_name="base"))
    assert "ft" not in workspace.read_registry().models


def test_a_tokenizer_rewritten_through_its_link_is_refused_before_use(qwen):
    view = qwen.root / "models" / "qwen"
    write_as_root(view / "tokenizer.json", lambda data: data.extend(b" "))  # follows the link: the blob
    digest = digest_of(qwen, "qwen", file="tokenizer.json")
    with pytest.raises(BlobChangedError) as caught:
        load_model(qwen, "qwen")
    assert (caught.value.item, caught.value.digest) == ("tokenizer.json", digest)
    assert str(caught.value).startswith("model 'qwen': tokenizer.json no longer matches what the store holds")


def test_a_link_replaced_by_a_file_stops_generate(qwen, root):
    link = root / "models" / "qwen" / "tokenizer_config.json"
    data = link.read_bytes()
    link.unlink()
    link.write_bytes(data)  # what a save_pretrained into the view leaves: same bytes, no link
    digest = digest_of(qwen, "qwen", file="tokenizer_config.json")
    result = run(root, "generate", "qwen", "--prompt", "hi", "--max-new-tokens", "2")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ("error: the view of model 'qwen' was written into: models/qwen/tokenizer_config.json "
                             f"is a file, no longer a link to object {digest[:12]}; nothing was loaded; {FIX} "
                             "to rebuild the view (what was written there is kept in "
                             ".modelstore/quarantine/view-files/)\n")


def test_a_model_safetensors_saved_into_the_view_is_refused(workspace, tiny_model):
    import_base(workspace, tiny_model)
    (workspace.root / "models" / "base" / "model.safetensors").write_bytes(b"what save_pretrained wrote")
    expected = ("the view of model 'base' was written into: models/base/model.safetensors is a weight file the "
                "view does not hold (loaders would read it); nothing was loaded")
    for load in (lambda: load_model(workspace, "base"), lambda: train(workspace, run_config(model_name="base"))):
        with pytest.raises(ViewWrittenError) as caught:
            load()
        assert caught.value.message == expected
        assert "validate-registry --fix" in caught.value.hint
    assert "ft" not in workspace.read_registry().models


def test_a_clean_view_and_an_outdated_one_load(qwen):
    from tests.registry.test_views import make_legacy

    entry = qwen.read_registry().models["qwen"]
    refuse_written_view(qwen, entry, qwen.manifest(entry.manifest))
    make_legacy(qwen, "qwen")  # not written into: only not upgraded yet (loads never write)
    refuse_written_view(qwen, entry, qwen.manifest(entry.manifest))
    assert load_model(qwen, "qwen").model is not None
