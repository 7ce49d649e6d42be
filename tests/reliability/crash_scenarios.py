"""The commands the crash harness (``crash.py``) kills, one ``Scenario`` each.

Every scenario prepares its workspace through the library (fast, and not under test
here), names the command a user would run, and says what must hold once that command
has been re-run after the crash: the same registered models, with the same files and
tensors, as after an uninterrupted run (``same_models``), and for gc and --fix the same
objects. Manifest digests are not compared: each run stamps ``created_at`` into its own.

Models are tiny qwen2 folders (one layer: ~160 mutating steps per import) built once per
process and copied.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tests.reliability.crash import WS, Scenario
from tests.reliability.invariants import settled

_BUILT: dict[int, Path] = {}


def tiny(dest: Path, seed: int) -> Path:
    """A one-layer tiny qwen2 folder with a tokenizer; models of different seeds share the
    config, tokenizer, norm and bias blobs, and have their own matrices."""
    if seed not in _BUILT:
        from tests.fixtures.tiny import write_tiny_model

        folder = Path(tempfile.mkdtemp(prefix="crash-tiny-")) / "model"
        _BUILT[seed] = write_tiny_model(folder, "qwen2", seed=seed, num_layers=1, hidden_size=16,
                                        vocab_size=320)
    shutil.copytree(_BUILT[seed], dest)
    return settled(dest)


def _import(base: Path, folder: str, name: str, seed: int):
    from registry.ingest.folder import import_folder
    from registry.workspace import Workspace

    return import_folder(Workspace.open(base / WS), tiny(base / folder, seed), name=name)


# --- what an uninterrupted run leaves --------------------------------------------------------


def models_of(root: Path) -> dict[str, dict]:
    """name -> what identifies its version regardless of when it was written."""
    from registry.workspace import Workspace

    ws = Workspace.open(root)
    found = {}
    for name, entry in ws.read_registry().models.items():
        manifest = ws.manifest(entry.manifest)
        found[name] = {
            "model_id": entry.model_id, "source": entry.source, "fine_tuned_from": entry.fine_tuned_from,
            "files": {p: f.digest for p, f in manifest.files.items()},
            "tensors": {n: t.digest for n, t in manifest.tensors.items()},
            "step": manifest.training.step if manifest.training else None,
            "status": entry.metadata.get("training_status"),
        }
    return found


def views_of(root: Path) -> list[str]:
    models = root / "models"
    return sorted(p.name for p in models.iterdir() if not p.name.startswith(".")
                  and p.name not in ("registry.json", "registry.json.prev")) if models.is_dir() else []


def objects_of(root: Path) -> set[str]:
    objects = root / ".modelstore" / "objects"
    return {fan.name + obj.name for fan in objects.iterdir() for obj in fan.iterdir()}


def same_models(root: Path, reference: Path) -> list[str]:
    problems = []
    got, want = models_of(root), models_of(reference)
    for name in sorted(set(got) | set(want)):
        if got.get(name) != want.get(name):
            problems.append(f"model {name!r} is {got.get(name)}, "
                            f"an uninterrupted run leaves {want.get(name)}")
    if views_of(root) != views_of(reference):
        problems.append(f"models/ holds {views_of(root)}, an uninterrupted run leaves {views_of(reference)}")
    return problems


def same_objects(root: Path, reference: Path) -> list[str]:
    extra, missing = objects_of(root) - objects_of(reference), objects_of(reference) - objects_of(root)
    if extra or missing:
        return [f"{len(extra)} objects an uninterrupted run does not leave, {len(missing)} missing: "
                f"{sorted(extra | missing)[:3]}"]
    return []


def same_models_and_objects(root: Path, reference: Path) -> list[str]:
    return same_models(root, reference) + same_objects(root, reference)


# --- import-model ----------------------------------------------------------------------------


def import_fresh() -> Scenario:
    """Import into an empty folder: the store, its FORMAT and the registry are created too."""
    return Scenario(
        name="import-fresh",
        setup=lambda base: tiny(base / "src", seed=1) and None,
        command=lambda base: ["import-model", str(base / "src"), "--name", "a", "-y"],
        expect=same_models, sources=("src",))


def import_shared() -> Scenario:
    """Import next to a model that already holds the config, tokenizer, norm and bias blobs."""

    def setup(base: Path) -> None:
        _import(base, "src-b", "b", seed=2)
        tiny(base / "src", seed=1)

    return Scenario(
        name="import-shared", setup=setup,
        command=lambda base: ["import-model", str(base / "src"), "--name", "a", "-y"],
        expect=same_models, sources=("src", "src-b"))


# --- delete-model, gc ------------------------------------------------------------------------


def _two_models(base: Path) -> None:
    _import(base, "src-a", "a", seed=1)
    _import(base, "src-b", "b", seed=2)


def delete(delete_files: bool = False) -> Scenario:
    flag = ["--delete-files"] if delete_files else ["--keep-view"]  # the CLI removes the view by default
    return Scenario(
        name="delete-files" if delete_files else "delete", setup=_two_models,
        command=lambda base: ["delete-model", "a", "-y", *flag],
        expect=same_models, sources=("src-a", "src-b"))


def gc_after_delete() -> Scenario:
    """gc --grace 0 with two of three models deleted: their own blobs and manifests go."""

    def setup(base: Path) -> None:
        from registry.ops import delete_model
        from registry.workspace import Workspace

        _two_models(base)
        _import(base, "src-c", "c", seed=3)
        ws = Workspace.open(base / WS)
        delete_model(ws, "a", delete_files=True)
        delete_model(ws, "c", delete_files=True)

    return Scenario(
        name="gc", setup=setup, command=lambda base: ["gc", "--grace", "0"],
        expect=same_models_and_objects, sources=("src-a", "src-b", "src-c"))


# --- validate-registry --fix -----------------------------------------------------------------

EXCLUSIVE = "model.embed_tokens.weight"  # a blob of model a only (seed-dependent)
LINKED = "model.layers.0.mlp.up_proj.weight"  # b's link to it goes missing


def fix_breakages() -> Scenario:
    """One corrupt object (a's own embedding, same size, other bytes), one link of b's view
    deleted, and registry.json gone: ``--fix`` quarantines and restores the object from a's
    source folder, rebuilds b's view and recovers the registry from the views."""
    damage: list[str] = []

    def setup(base: Path) -> None:
        from registry.workspace import Workspace

        _two_models(base)
        ws = Workspace.open(base / WS)
        digest = ws.read_registry().models["a"].manifest
        blob = ws.objects.path(ws.manifest(digest).tensors[EXCLUSIVE].digest)
        os.chmod(blob, 0o644)
        data = bytearray(blob.read_bytes())
        data[-1] ^= 0xFF
        blob.write_bytes(bytes(data))
        os.chmod(blob, 0o444)
        link = base / WS / "models" / "b" / f"tensor-{LINKED}.safetensors"
        link.unlink()
        ws.registry_path.unlink()
        object_digest = blob.parent.name + blob.name
        damage[:] = [object_digest[:12], f"{object_digest[:2]}/{object_digest[2:]}",
                     str(link.relative_to(base / WS)), "registry-missing"]

    return Scenario(
        name="fix", setup=setup, command=lambda base: ["validate-registry", "--fix", "-y"],
        expect=same_models_and_objects, sources=("src-a", "src-b"),
        tolerated=lambda problem: any(mark in problem for mark in damage))


# --- train (checkpoints) ---------------------------------------------------------------------

_TRAIN = """
model_name = "base"
seq_len = 16
batch_size = 2
lr = 3e-3
max_steps = {max_steps}
save_every = 2
eval_every = 0
output_name = "ft"
device = "cpu"
"""


def train_resume() -> Scenario:
    """``train --resume`` from a run registered at step 2, on to step 6 (checkpoints at 4, 6).

    Killed during a checkpoint, the rerun resumes from the last committed one; the final
    checkpoint must hold exactly the tensors of an uninterrupted run (resume is exact)."""

    def setup(base: Path) -> None:
        import torch

        from registry.workspace import Workspace
        from training.train import train

        _import(base, "src", "base", seed=1)
        (base / "first.toml").write_text(_TRAIN.format(max_steps=2))
        (base / "ft.toml").write_text(_TRAIN.format(max_steps=6))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a tiny model: threads only add overhead
        try:  # in this process: a CLI run would start torch once more
            train(Workspace.open(base / WS), base / "first.toml")
        finally:
            torch.set_num_threads(threads)

    return Scenario(
        name="train", setup=setup,
        command=lambda base: ["train", "--config", str(base / "ft.toml"), "--resume"],
        expect=same_models, sources=("src",), timeout=300)


# --- import-model from the Hub ---------------------------------------------------------------

HUB_REPO = "Qwen/Tiny"


def hub_import(hub_server) -> Scenario:
    """Import from the fake Hub (``tests/hub``) into an empty folder; the server outlives it."""

    def setup(base: Path) -> None:
        hub_server.add_repo(HUB_REPO, tiny(base / "upstream", seed=1), card_license="apache-2.0")

    return Scenario(
        name="hub-import", setup=setup, command=lambda base: ["import-model", HUB_REPO, "--name", "a", "-y"],
        expect=same_models, env={"HF_ENDPOINT": hub_server.endpoint, "HF_HUB_OFFLINE": "0"}, timeout=300)
