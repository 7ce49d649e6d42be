"""The stores and commands the disk-full harness (``diskfull.py``) fails step by step.

Sources are tiny Qwen2 models with no decoder layer and no tokenizer: embeddings, the
final norm, config.json and generation_config.json (they load with transformers). Each
mutating step costs a trial (two CLI runs and two store checks), and a layer would only
repeat, twelve times more, the steps a blob already takes; every kind of step is still
there (store creation, blob writes, fan-out folders, the manifest, the view, the
registry). Models of seed 0 and seed 1 share their norm weights and config files (RMSNorm
weights are ones whatever the seed), so importing one beside the other both reuses blobs
and writes new ones.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.reliability.diskfull import Scenario, Setup, registry_names
from tests.reliability.invariants import ROOT, registry_entries, run_cli, settled

SMALL = {"num_layers": 0, "with_tokenizer": False, "hidden_size": 16, "vocab_size": 64}
_built: dict[tuple, Path] = {}
_cache_dir: Path | None = None


def tiny_source(dest: Path, seed: int = 0, **kwargs) -> Path:
    """A copy of a tiny model folder at ``dest`` (each shape is built once per process)."""
    global _cache_dir
    from tests.fixtures.tiny import write_tiny_model

    key = (seed, tuple(sorted({**SMALL, **kwargs}.items())))
    if key not in _built:
        if _cache_dir is None:
            _cache_dir = Path(tempfile.mkdtemp(prefix="diskfull-models-"))
            atexit.register(shutil.rmtree, _cache_dir, True)
        _built[key] = write_tiny_model(_cache_dir / f"m{len(_built)}", "qwen2", seed=seed, **dict(key[1]))
    shutil.copytree(_built[key], dest)
    return settled(dest)


def cli_ok(root: Path, *args: str) -> subprocess.CompletedProcess:
    result = run_cli(root, *args)
    if result.returncode != 0:
        raise RuntimeError(f"setup: {' '.join(args)} failed: {result.stderr[-1500:]}")
    return result


def _workspace(folder: Path) -> Path:
    root = folder / "ws"
    root.mkdir(parents=True)
    return root


def import_fresh(folder: Path) -> Setup:
    """An empty workspace: the import also creates the store (FORMAT, objects/, models/)."""
    root = _workspace(folder)
    src = tiny_source(folder / "src")
    return Setup(root, ["import-model", str(src), "--name", "m", "-y"], [src])


def import_beside(folder: Path) -> Setup:
    """A store holding another model: the import reuses some blobs, writes the others and
    rewrites a registry that has an entry to keep."""
    root = _workspace(folder)
    cli_ok(root, "import-model", str(tiny_source(folder / "other", seed=1)), "--name", "other", "-y")
    src = tiny_source(folder / "src")
    return Setup(root, ["import-model", str(src), "--name", "m", "-y"], [src])


def import_second_name(folder: Path) -> Setup:
    """The same folder again under a second name: every blob exists; only the manifest, the
    view and the registry are written."""
    root = _workspace(folder)
    src = tiny_source(folder / "src")
    cli_ok(root, "import-model", str(src), "--name", "m", "-y")
    # Manifests record their creation to the second: an import within the same second
    # would find m's manifest already stored and skip writing one, so some runs would have
    # six steps fewer than others. After this, every run writes its own.
    time.sleep(1.05 - time.time() % 1)
    return Setup(root, ["import-model", str(src), "--name", "m2", "-y"], [src])


def import_overwrite(folder: Path) -> Setup:
    """--on-conflict overwrite: the name's view is replaced, and must come back if the
    registry write fails."""
    root = _workspace(folder)
    cli_ok(root, "import-model", str(tiny_source(folder / "other", seed=1)), "--name", "m", "-y")
    src = tiny_source(folder / "src")
    return Setup(root, ["import-model", str(src), "--name", "m", "-y", "--on-conflict", "overwrite"], [src])


def manifest_of_m(root: Path) -> tuple[list[str], str]:
    """The registered names and where m's manifest came from (the overwrite's source)."""
    import json

    entry = registry_entries(root)["m"]
    manifest = root / ".modelstore" / "objects" / entry["manifest"][:2] / entry["manifest"][2:]
    return registry_names(root), json.loads(manifest.read_bytes())["origin"]["path"]


def delete_model(folder: Path) -> Setup:
    """delete-model --delete-files: the registry entry goes, then the view."""
    root = _workspace(folder)
    src = tiny_source(folder / "src")
    cli_ok(root, "import-model", str(src), "--name", "m", "-y")
    cli_ok(root, "import-model", str(tiny_source(folder / "other", seed=1)), "--name", "other", "-y")
    return Setup(root, ["delete-model", "m", "-y", "--delete-files"], [src])


def objects_and_names(root: Path) -> tuple[list[str], list[str]]:
    objects = root / ".modelstore" / "objects"
    found = sorted(f"{fan.name}{o.name}" for fan in objects.iterdir() for o in fan.iterdir())
    return found, registry_names(root)


def gc_store(folder: Path) -> Setup:
    """gc --grace 0 after a delete: the deleted model's unshared blobs are collected."""
    root = _workspace(folder)
    src = tiny_source(folder / "src")
    cli_ok(root, "import-model", str(src), "--name", "m", "-y")
    cli_ok(root, "import-model", str(tiny_source(folder / "other", seed=1)), "--name", "other", "-y")
    cli_ok(root, "delete-model", "other", "-y", "--delete-files")
    return Setup(root, ["gc", "--grace", "0"], [src])


def fix_view(folder: Path) -> Setup:
    """validate-registry --fix -y rebuilding a view that was deleted."""
    root = _workspace(folder)
    src = tiny_source(folder / "src")
    cli_ok(root, "import-model", str(src), "--name", "m", "-y")
    shutil.rmtree(root / "models" / "m")
    return Setup(root, ["validate-registry", "--fix", "-y"], [src])


TRAIN = Scenario("train", lambda folder: train_scratch(folder))

SCENARIOS = {s.name: s for s in (
    Scenario("import-fresh", import_fresh),
    Scenario("import-beside", import_beside),
    Scenario("import-second-name", import_second_name),
    Scenario("import-overwrite", import_overwrite, outcome=manifest_of_m),
    Scenario("delete-model", delete_model, rerun_after_commit=False),
    Scenario("gc", gc_store, outcome=objects_and_names),
    Scenario("fix-view", fix_view, damaged=True),
)}

TRAIN_CONFIG = """
data = "data/text.txt"
seq_len = 16
batch_size = 2
max_steps = 2
save_every = 2
eval_every = 0
eval_fraction = 0.0
output_name = "lm"
device = "cpu"

[model]
n_layer = 1
n_embd = 16
max_seq_len = 32
"""


def train_scratch(folder: Path) -> Setup:
    """train from scratch: the first checkpoint is saved into the store and registered.

    The store exists, empty (its creation is import-fresh's to test), so that the harness
    makes its fan-out folders up front: the checkpoint's manifest holds its creation time,
    and in a store the command creates it needed a new fan-out folder in some runs and not
    in others, often enough to shift the sampled steps past every retry."""
    from registry.workspace import Workspace

    root = _workspace(folder)
    Workspace.open(root).ensure_store()
    data = folder / "data"
    data.mkdir()
    # A few KB of the project corpus: tokenizing all of it would cost each trial a second.
    (data / "text.txt").write_bytes((ROOT / "data" / "corpus.txt").read_bytes()[:8192])
    config = folder / "run.toml"
    config.write_text(TRAIN_CONFIG)
    return Setup(root, ["train", "--config", str(config)], [data])


def hub_scenario(server, endpoint_env: dict[str, str] | None = None, repo: str = "Qwen/Tiny") -> Scenario:
    """import-model REPO -y through the fake Hub (tests/hub): downloads go to .modelstore/tmp.

    ``endpoint_env`` points the CLI at ``server`` (HF_ENDPOINT, HF_HOME, ...); the
    ``hub_server`` fixture has already put those in the environment, which ``cli_env`` passes on.
    """

    def prepare(folder: Path) -> Setup:
        root = _workspace(folder)
        if repo not in server.repos:
            server.add_repo(repo, tiny_source(folder / "repo"), card_license="apache-2.0")
        return Setup(root, ["import-model", repo, "--name", "m", "-y"], env=dict(endpoint_env or {}))

    # rerun_after_commit: on this branch a Hub re-import of a name it already registered is
    # refused as a conflict, so past the commit the registry is checked but not re-imported.
    return Scenario("import-hub", prepare, rerun_after_commit=False)
