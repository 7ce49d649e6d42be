"""export-model: imported models come back byte for byte, trained ones as save_pretrained
shards them; every byte is checked on the way and a failure leaves nothing behind.
validate-registry --upstream proves, offline, that the store holds what the Hub published."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import torch

from registry.export import ExportError, export_model, verify_upstream
from registry.hub.importer import import_from_hub
from registry.ingest.folder import import_folder
from registry.ops import get_model, register
from store.errors import CorruptObjectError
from store.manifest import put_manifest
from tests.hub.fixtures import hub_cache_dir, hub_server  # noqa: F401  (fixtures)
from tests.registry.breakage import flip_bit

REPO = Path(__file__).resolve().parents[2]


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("shards", [1, 3])
def test_a_local_import_exports_byte_for_byte(workspace, tiny_model, tmp_path, shards):
    src = tiny_model(shards=shards)
    import_folder(workspace, src, name="m")
    result = export_model(workspace, "m", tmp_path / "out")
    assert result.exact and result.regrouped is None
    assert files_of(tmp_path / "out") == files_of(src)


def test_a_hub_import_exports_byte_for_byte_checked_against_the_hubs_hashes(workspace, hub_server, tiny_model,
                                                                            tmp_path):
    src = tiny_model(shards=2)
    hub_server.add_repo("Qwen/Tiny", src, card_license="apache-2.0")
    import_from_hub(workspace, "Qwen/Tiny", assume_yes=True)
    result = export_model(workspace, "Tiny", tmp_path / "out")
    published = files_of(src)
    assert files_of(tmp_path / "out") == {k: v for k, v in published.items() if k != "README.md"}
    assert {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
            "model.safetensors.index.json", "config.json"} <= set(result.verified)
    checks = verify_upstream(workspace)
    assert checks and all(c.problem is None for c in checks)


def test_upstream_check_finds_a_changed_header(workspace, hub_server, tiny_model):
    hub_server.add_repo("Qwen/Tiny", tiny_model(), card_license="apache-2.0")
    result = import_from_hub(workspace, "Qwen/Tiny", assume_yes=True)
    header = result.manifest.origin.files["model.safetensors"].header
    path = workspace.objects.path(header.digest)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] = ord(" ") if data[-1] != ord(" ") else ord("\t")  # padding changed: same size
    path.write_bytes(bytes(data))
    [check] = [c for c in verify_upstream(workspace) if c.relpath == "model.safetensors"]
    assert check.problem.startswith(f"object {header.digest} is corrupt")


def without_kept_bytes(workspace, name: str):
    """The model as an import made before headers and the index were kept."""
    entry, manifest = get_model(workspace, name)
    files = {p: msgspec.structs.replace(f, header=None, content=None) for p, f in manifest.origin.files.items()}
    files = {p: f for p, f in files.items() if not p.endswith(".index.json")}
    old = msgspec.structs.replace(manifest, origin=msgspec.structs.replace(manifest.origin, files=files))
    register(workspace, name, put_manifest(workspace.objects, old), old, on_conflict="overwrite")


def test_an_older_hub_import_gets_its_header_rebuilt_where_the_sha256_confirms_it(workspace, hub_server,
                                                                                  tiny_model, tmp_path):
    src = tiny_model()
    hub_server.add_repo("Qwen/Tiny", src, card_license="apache-2.0")
    import_from_hub(workspace, "Qwen/Tiny", assume_yes=True)
    without_kept_bytes(workspace, "Tiny")
    result = export_model(workspace, "Tiny", tmp_path / "out")
    assert result.exact and "model.safetensors" in result.verified
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()


def test_an_older_local_import_is_exported_as_new_shards_and_says_so(workspace, tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    src = tiny_model(shards=2)
    import_folder(workspace, src, name="m")
    without_kept_bytes(workspace, "m")
    result = export_model(workspace, "m", tmp_path / "out")
    assert not result.exact and "before modelstore kept" in result.regrouped
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    theirs = AutoModelForCausalLM.from_pretrained(src)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))


def test_a_trained_model_is_sharded_as_save_pretrained_does(workspace, tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from tests.training.runs import FREEZE_75, import_base, run_config
    from training.train import train

    import_base(workspace, tiny_model)
    train(workspace, run_config(model_name="base", freeze=FREEZE_75, max_steps=2, save_every=2))
    result = export_model(workspace, "ft", tmp_path / "out", max_shard_size=60_000)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "model.safetensors.index.json" in names and sum(n.endswith(".safetensors") for n in names) > 1
    assert "optimizer.safetensors" not in names
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    view = AutoModelForCausalLM.from_pretrained(workspace.root / "models" / "ft")
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(exported(ids).logits, view(ids).logits)
    assert result.regrouped is None and not result.verified


def test_a_corrupted_blob_stops_the_export_and_leaves_nothing(workspace, tiny_model, tmp_path):
    result = import_folder(workspace, tiny_model(), name="m")
    flip_bit(workspace.objects.path(result.manifest.tensors["model.norm.weight"].digest))
    with pytest.raises(CorruptObjectError):
        export_model(workspace, "m", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_a_folder_that_is_not_empty_is_refused(workspace, tiny_model, tmp_path):
    import_folder(workspace, tiny_model(), name="m")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="exists and is not an empty folder"):
        export_model(workspace, "m", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_the_cli_exports_and_validates_upstream(workspace, root, hub_server, tiny_model, tmp_path):
    hub_server.add_repo("Qwen/Tiny", tiny_model(), card_license="apache-2.0")
    import_from_hub(workspace, "Qwen/Tiny", assume_yes=True)
    env = {**os.environ}
    out = subprocess.run([sys.executable, str(REPO / "main.py"), "--root", str(root), "export-model", "Tiny",
                          str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"exported Tiny to {tmp_path / 'out'}: ") and "byte for byte" in out.stdout
    up = subprocess.run([sys.executable, str(REPO / "main.py"), "--root", str(root), "validate-registry",
                         "--upstream"], capture_output=True, text=True, env=env)
    assert up.returncode == 0, up.stderr
    assert "Tiny: model.safetensors: matches the Hub's sha256" in up.stdout


def test_fix_restores_a_kept_header_from_the_local_source(workspace, tiny_model):
    from registry.check.validate import validate
    from registry.repair.fix import repair

    result = import_folder(workspace, tiny_model(shards=2), name="m")
    header = result.manifest.origin.files["model-00001-of-00002.safetensors"].header
    flip_bit(workspace.objects.path(header.digest))
    assert [(f.code, f.digest) for f in validate(workspace).errors] == [("object-corrupt", header.digest)]
    fixed = repair(workspace, on_plan=lambda report, plan: True)
    assert fixed.outcome.failed == [] and validate(workspace).errors == []
