"""What every reliability scenario checks after it breaks something: the store's promise.

A scenario (a crash, a race, a full disk, a hostile input) is followed by ``check_store``,
which returns the list of broken promises (empty when the store is sound):

- ``validate-registry --json`` reports no error (notes, i.e. orphans and temp debris, are
  allowed: a crash may leave them and ``gc`` reclaims them);
- every file under ``.modelstore/objects/`` hashes to its own name (no partial object under
  a final name, whether referenced or not);
- every registry entry's manifest exists and every link of its view resolves.

The checks run the real CLI in a subprocess, as a user would after the crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from tests.conftest import settled  # noqa: F401 - the harnesses' sources are settled

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "main.py"


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: offline, quiet, no fault plan unless given."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MODELSTORE_FAULT", "MODELSTORE_FAULT_LOG", "MODELSTORE_NO_LOCK",
                        "MODELSTORE_DEBUG", "MODELSTORE_ROOT")}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("OMP_NUM_THREADS", "1")
    # The project first; what the caller had after it (test_report plants a broken store's
    # sitecustomize there, to show that `make reliability` fails on it).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def cli_args(root: Path, *args: str) -> list[str]:
    return [sys.executable, str(MAIN), "--root", str(root), *args]


def run_cli(root: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python main.py --root ROOT ARGS`` to completion and return the result."""
    return subprocess.run(cli_args(root, *args), env=env or cli_env(), capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def tree_digest(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (links: their target text) under ``folder``."""
    out: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def bad_objects(root: Path) -> list[str]:
    """Object files whose bytes do not hash to their name (a partial or corrupt object)."""
    from store.digest import digest_file

    objects = root / ".modelstore" / "objects"
    bad = []
    if objects.is_dir():
        for fan in sorted(objects.iterdir()):
            for obj in sorted(fan.iterdir()):
                if obj.is_symlink() or not obj.is_file() or digest_file(obj) != fan.name + obj.name:
                    bad.append(f"{fan.name}/{obj.name}")
    return bad


def registry_entries(root: Path) -> dict:
    """The registry's entries as plain JSON (empty when there is no registry yet)."""
    path = root / "models" / "registry.json"
    if not path.exists():
        return {}
    return json.loads(path.read_bytes())["models"]


def validation_errors(root: Path, *, deep: bool = True) -> list[str]:
    """The error findings of ``validate-registry --json`` as 'code: message' lines."""
    if not (root / ".modelstore").exists() and not (root / "models").exists():
        return []
    args = ["validate-registry", "--json"] + ([] if deep else ["--fast"])
    result = run_cli(root, *args)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        return [f"validate-registry exited {result.returncode} without a report: "
                f"{result.stderr.strip()[-300:]}"]
    return [f"{f['code']}: {f['message']}" for f in report["findings"] if f["severity"] == "error"]


def check_store(root: Path, sources: Iterable[tuple[Path, dict[str, str]]] = ()) -> list[str]:
    """Every broken promise of the store at ``root``; ``sources`` are (folder, tree_digest
    taken before) pairs that must be byte-identical now."""
    problems = validation_errors(root)
    problems += [f"object does not hash to its name: {o}" for o in bad_objects(root)]
    for folder, before in sources:
        if tree_digest(folder) != before:
            problems.append(f"source changed: {folder}")
    return problems


def temp_debris(root: Path) -> list[str]:
    """Temp files in .modelstore/tmp and half-built or half-removed views under models/,
    relative to ``root`` (the debris a crash or failure may leave; gc sweeps it)."""
    from registry.debris import is_debris

    found = []
    tmp = root / ".modelstore" / "tmp"
    if tmp.is_dir():
        found += [f".modelstore/tmp/{p.name}" for p in tmp.iterdir()]
    models = root / "models"
    if models.is_dir():
        found += [f"models/{p.name}" for p in models.iterdir() if is_debris(p.name)]
    return sorted(found)

