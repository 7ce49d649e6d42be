"""One test per crash window the harness found, each killing the CLI at the exact step.

The step is located by name in an uninterrupted run's step log (``MODELSTORE_FAULT=count``),
then a twin workspace is killed there (``kill@N``), so the tests do not depend on how many
blobs a model has.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from registry.ops import delete_model
from registry.ingest.folder import import_folder
from registry.workspace import Workspace
from store.fs import faults, fsops
from registry.errors import RegistryError
from store.errors import StoreFormatError, StoreIOError
from store.layout import Layout
from tests.reliability.invariants import check_store, cli_env, run_cli


def killed_at(tmp_path: Path, prepare, args: list[str], op: str, path_end: str, *, offset: int = 0,
              nth: int = 1) -> Path:
    """Run ``args`` on a workspace ``prepare`` fills, SIGKILLed at the ``nth`` step doing ``op`` on a
    path ending in ``path_end`` (plus ``offset`` steps); return that workspace."""
    counted, killed = tmp_path / "counted", tmp_path / "killed"
    for root in (counted, killed):
        root.mkdir()
        prepare(root)
        if prepare is not no_store:
            # Every fan-out folder exists up front, so both runs take the same numbered steps
            # (a manifest, whose bytes hold a timestamp, may otherwise need a new one).
            Workspace.open(root).ensure_store()
            for fan in range(256):
                (root / ".modelstore" / "objects" / f"{fan:02x}").mkdir(exist_ok=True)
    log = tmp_path / "count.log"
    done = run_cli(counted, *args, env=cli_env(MODELSTORE_FAULT="count", MODELSTORE_FAULT_LOG=str(log)))
    assert done.returncode == 0, done.stderr
    steps = [line.split("\t") for line in log.read_text().splitlines()]
    matches = [int(n) for n, step_op, path in steps if step_op == op and path.endswith(path_end)]
    assert len(matches) >= nth, (op, path_end, steps[-12:])
    result = run_cli(killed, *args, env=cli_env(MODELSTORE_FAULT=f"kill@{matches[nth - 1] + offset}",
                                                MODELSTORE_FAULT_LOG=str(tmp_path / "killed.log")))
    assert result.returncode == -9, result.stderr
    return killed


def no_store(root: Path) -> None:
    """An empty folder: the command creates the store itself."""


def validation(root: Path) -> list[tuple[str, str, str]]:
    result = run_cli(root, "validate-registry", "--json")
    return [(f["severity"], f["code"], f["message"]) for f in json.loads(result.stdout)["findings"]]


def test_a_store_killed_before_it_was_renamed_into_place_is_no_store(tmp_path, tiny_model):
    source = tiny_model()
    root = killed_at(tmp_path, no_store, ["import-model", str(source), "--name", "a"], "rename", ".modelstore")
    staging = [p.name for p in root.iterdir() if p.name.startswith(".modelstore-")]
    assert not (root / ".modelstore").exists() and len(staging) == 1
    assert check_store(root) == []
    again = run_cli(root, "import-model", str(source), "--name", "a")
    assert again.returncode == 0, again.stderr
    assert check_store(root) == [] and (root / ".modelstore" / "FORMAT").is_file()
    assert not (root / staging[0]).exists()  # the dead creation's staging folder was swept


def test_a_format_less_store_is_refused(tmp_path):
    layout = Layout(tmp_path)
    layout.create()
    layout.format_file.unlink()
    assert layout.exists()
    with pytest.raises(StoreFormatError, match="no FORMAT marker"):
        layout.check_format()


def test_first_model_killed_between_its_view_and_the_registry(tmp_path, tiny_model):
    source = tiny_model()
    root = killed_at(tmp_path, lambda root: None, ["import-model", str(source), "--name", "a"],
                     "rename", "/models/a", offset=1)  # the store exists, with no model yet
    assert (root / "models" / "a" / "metadata.json").is_file()
    # was: registry-missing ("models/ still holds views"), an error, since no registry.json existed
    assert json.loads((root / "models" / "registry.json").read_text())["models"] == {}
    assert [(s, c) for s, c, _ in validation(root)] == [("info", "orphan-directory"),
                                                       ("info", "object-unreferenced")]
    again = run_cli(root, "import-model", str(source), "--name", "a")  # was: "models/a exists but is not
    assert again.returncode == 0, again.stderr                          # registered"
    # the re-run adopts the killed run's view and manifest: nothing is left over for gc
    assert check_store(root) == [] and validation(root) == []


def test_a_leftover_view_with_anything_added_is_not_replaced(tmp_path, tiny_model):
    ws = Workspace.open(tmp_path)
    source = tiny_model()
    import_folder(ws, source, name="a")
    delete_model(ws, "a")  # keeps models/a: an exact view, unregistered
    (tmp_path / "models" / "a" / "notes.txt").write_text("mine")
    from registry.errors import ModelExistsError

    with pytest.raises(ModelExistsError, match="models/a exists but is not registered"):
        import_folder(ws, source, name="a")
    assert (tmp_path / "models" / "a" / "notes.txt").read_text() == "mine"
    (tmp_path / "models" / "a" / "notes.txt").unlink()
    assert import_folder(ws, source, name="a").entry.model_name == "a"


def _a_then_b(source_a: Path):
    return lambda root: import_folder(Workspace.open(root), source_a, name="a")


def test_overwrite_killed_before_its_commit_leaves_a_note_that_gc_and_fix_respect(tmp_path, tiny_model):
    first, second = tiny_model(name="first", seed=1), tiny_model(name="second", seed=2)
    args = ["import-model", str(second), "--name", "a", "--on-conflict", "overwrite"]
    root = killed_at(tmp_path, _a_then_b(first), args, "rename", "/models/registry.json")
    ws = Workspace.open(root)
    registered = ws.read_registry().models["a"].manifest
    shown = json.loads((root / "models" / "a" / "metadata.json").read_text())["manifest"]
    assert shown != registered  # the view was swapped, the registry not yet replaced
    # was: view-link-retargeted and view-file-modified errors
    [(severity, code, message)] = [f for f in validation(root) if f[1] == "view-uncommitted"]
    assert severity == "info" and f"models/a shows version {shown[:12]}" in message
    assert check_store(root) == []
    gc = run_cli(root, "gc", "--grace", "0")  # keeps the objects that view links to
    assert gc.returncode == 0, gc.stderr
    assert check_store(root) == [] and ws.objects.exists(shown)
    assert all(link.exists() for link in (root / "models" / "a").rglob("*"))  # the view still loads
    fixed = run_cli(root, "validate-registry", "--fix", "-y")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert json.loads((root / "models" / "a" / "metadata.json").read_text())["manifest"] == registered
    assert [c for _, c, _ in validation(root)] == ["object-unreferenced"]


def test_rerun_of_an_overwrite_killed_before_its_commit(tmp_path, tiny_model):
    first, second = tiny_model(name="first", seed=1), tiny_model(name="second", seed=2)
    args = ["import-model", str(second), "--name", "a", "--on-conflict", "overwrite"]
    root = killed_at(tmp_path, _a_then_b(first), args, "rename", "/models/registry.json")
    again = run_cli(root, *args)
    assert again.returncode == 0, again.stderr
    manifest = Workspace.open(root).manifest(Workspace.open(root).read_registry().models["a"].manifest)
    assert manifest.origin.path == str(second) and check_store(root) == []


@pytest.mark.parametrize("where", ["after the commit", "at the last step"])
def test_delete_killed_after_its_commit_is_finished_by_a_rerun(tmp_path, tiny_model, where):
    source = tiny_model()
    args = ["delete-model", "a", "-y", "--delete-files"]
    op, end, offset = (("rename", "/models/registry.json", 1) if where == "after the commit"
                       else ("fsync", "/models", 0))
    nth = 1 if where == "after the commit" else 2  # the registry's directory, then the view's
    root = killed_at(tmp_path, _a_then_b(source), args, op, end, offset=offset, nth=nth)
    assert "a" not in Workspace.open(root).read_registry().models
    again = run_cli(root, *args)  # was: "no model named 'a' is registered"
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("a was already deleted")
    assert sorted(p.name for p in (root / "models").iterdir()) == ["registry.json", "registry.json.prev"]
    assert check_store(root) == []
    unknown = run_cli(root, "delete-model", "never-was", "-y")
    assert unknown.returncode != 0 and "no model named 'never-was'" in unknown.stderr


def test_registering_into_a_store_whose_registry_is_lost_is_refused(tmp_path, tiny_model):
    ws = Workspace.open(tmp_path)
    import_folder(ws, tiny_model(name="a"), name="a")
    ws.registry_path.unlink()
    (tmp_path / "models" / "registry.json.prev").unlink()
    with pytest.raises(RegistryError, match="it is missing, but models/ still holds views"):
        import_folder(ws, tiny_model(name="b", seed=2), name="b")
    assert not ws.registry_path.exists()  # the evidence --fix recovers from is untouched


def test_hub_download_truncates_through_fsops(tmp_path, monkeypatch):
    from registry.hub.download import RemoteFile
    from registry.hub.sink import Sink

    fd, path = fsops.create_temp(tmp_path, "hub")
    remote = RemoteFile(path="model.safetensors", size=4, sha256="0" * 64, git_oid=None)
    sink = Sink("org/repo", remote, fd, path)
    sink.write(b"abcd")
    monkeypatch.setattr(faults, "plan", faults.FaultPlan("enospc@1", None))
    with pytest.raises(StoreIOError) as raised:
        sink.truncate(2)  # was: os.ftruncate, invisible to the fault hook and the ENOSPC mapping
    assert raised.value.errno == errno.ENOSPC and str(path) in str(raised.value)
    monkeypatch.setattr(faults, "plan", None)
    assert sink.truncate(2) == 2 and path.read_bytes() == b"ab"
