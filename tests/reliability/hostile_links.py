"""Symlinks planted in the store's own folders, pointing outside it, and what each writer does.

Every plant links a path of the workspace to something under the scene's ``outside/``
sentinel (a copy of what was there, where that makes the link look legitimate). Then each
writing command runs: ``import-model``, ``delete-model --delete-files``, ``gc --grace 0``,
``validate-registry --fix -y``. The promise: files outside stay byte-identical (mode and
mtime too) and are never deleted; a command either refuses with the one-line
``UnsafePathError`` naming the link, or acts on the link itself (replaces or removes the
link, never what it points to). ``EXPECTED`` says which, for every (plant, command) pair.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from tests.reliability.hostile_scene import MODEL, Case, Scene

OLD = time.time() - 7 * 86400  # older than any gc grace period


def _manifest(scene: Scene):
    from registry.workspace import Workspace

    ws = Workspace.open(scene.ws)
    return ws, ws.manifest(ws.read_registry().models[MODEL].manifest)


def _replace_with_link(path: Path, target: Path, *, keep_copy: bool = True) -> None:
    """Put a link to ``target`` (outside) in place of ``path``; ``target`` gets a copy of what
    ``path`` held (so the link looks legitimate), or is an empty folder."""
    if keep_copy and path.is_dir():
        shutil.copytree(path, target, symlinks=True)
    elif keep_copy:
        shutil.copy2(path, target)
    else:
        target.mkdir()
    if path.is_dir():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    os.symlink(target, path)


def _old_file(path: Path, text: str = "old") -> None:
    path.write_text(text)
    os.utime(path, (OLD, OLD))


def _corrupt_one_object(scene: Scene) -> None:
    """Flip a byte of the tokenizer_config.json blob (same size): --fix wants to quarantine it."""
    ws, manifest = _manifest(scene)
    path = ws.objects.path(manifest.files["tokenizer_config.json"].digest)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    path.chmod(0o444)


def plant_view_dir(s: Scene) -> None:
    _replace_with_link(s.ws / "models" / MODEL, s.outside / "view")


def plant_view_file(s: Scene) -> None:
    view = s.ws / "models" / MODEL
    (view / "config.json").unlink()
    os.symlink(s.outside / "config.json", view / "config.json")


def plant_view_subdir(s: Scene) -> None:
    """A folder link in the view, named like the folder views kept their tensors in before."""
    (s.outside / "weights").mkdir()
    _old_file(s.outside / "weights" / "planted.safetensors")
    os.symlink(s.outside / "weights", s.ws / "models" / MODEL / "weights")


def plant_registry(s: Scene) -> None:
    _replace_with_link(s.ws / "models" / "registry.json", s.outside / "registry.json")


def plant_registry_prev(s: Scene) -> None:
    prev = s.ws / "models" / "registry.json.prev"
    if os.path.lexists(prev):
        prev.unlink()
    os.symlink(s.outside / "keep.txt", prev)


def plant_objects_fan(s: Scene) -> None:
    """The fan-out folder of config.json's blob, with an old unreachable object-named file added."""
    ws, manifest = _manifest(s)
    fan = ws.objects.path(manifest.files["config.json"].digest).parent
    _replace_with_link(fan, s.outside / "fan")
    _old_file(s.outside / "fan" / ("0" * 62), "an unreachable object, as gc would see it")


def _unreachable_object(objects: Path) -> None:
    """An old file named like an object no model reaches: what gc would delete, if it got there."""
    (objects / "00").mkdir(exist_ok=True)
    _old_file(objects / "00" / ("0" * 62), "an unreachable object, as gc would see it")


def plant_objects_fan_corrupt(s: Scene) -> None:
    """As objects-fan, with the blob behind the link corrupt: --fix must not quarantine it from there."""
    plant_objects_fan(s)
    blob = next(p for p in (s.outside / "fan").iterdir() if p.name != "0" * 62)
    blob.chmod(0o644)
    blob.write_bytes(b"!" + blob.read_bytes()[1:])


def plant_objects_fan_writable(s: Scene) -> None:
    """As objects-fan, with the blobs behind the link writable: --fix must not seal them there."""
    plant_objects_fan(s)
    for blob in (s.outside / "fan").iterdir():
        blob.chmod(0o644)


def plant_object_file(s: Scene) -> None:
    """config.json's blob itself is a link to an outside copy of the right bytes."""
    ws, manifest = _manifest(s)
    _replace_with_link(ws.objects.path(manifest.files["config.json"].digest), s.outside / "object")


def plant_objects(s: Scene) -> None:
    _replace_with_link(s.ws / ".modelstore" / "objects", s.outside / "objects")
    _unreachable_object(s.outside / "objects")


def plant_tmp(s: Scene) -> None:
    _replace_with_link(s.ws / ".modelstore" / "tmp", s.outside / "tmp", keep_copy=False)
    _old_file(s.outside / "tmp" / "obj-1-deadbeef.tmp", "an old temp file, as gc would see it")


def plant_quarantine(s: Scene) -> None:
    _replace_with_link(s.ws / ".modelstore" / "quarantine", s.outside / "quarantine", keep_copy=False)
    _corrupt_one_object(s)


def plant_quarantine_kind(s: Scene) -> None:
    (s.ws / ".modelstore" / "quarantine").mkdir(exist_ok=True)
    (s.outside / "qobjects").mkdir()
    os.symlink(s.outside / "qobjects", s.ws / ".modelstore" / "quarantine" / "objects")
    _corrupt_one_object(s)


def plant_lock(s: Scene) -> None:
    lock = s.ws / ".modelstore" / "lock"
    if os.path.lexists(lock):
        lock.unlink()
    os.symlink(s.outside / "lock", lock)  # dangling: opening it with O_CREAT would create it


def plant_models(s: Scene) -> None:
    _replace_with_link(s.ws / "models", s.outside / "models")
    (s.outside / "models" / ".deleted-x-1-deadbeef.tmp").mkdir()  # debris, as gc would see it
    os.utime(s.outside / "models" / ".deleted-x-1-deadbeef.tmp", (OLD, OLD))


def plant_store(s: Scene) -> None:
    _replace_with_link(s.ws / ".modelstore", s.outside / "store")
    _unreachable_object(s.outside / "store" / "objects")


# plant id -> (plant, the link's path relative to the workspace)
PLANTS: dict[str, tuple[Callable[[Scene], None], str]] = {
    "view-dir": (plant_view_dir, f"models/{MODEL}"),
    "view-file": (plant_view_file, f"models/{MODEL}/config.json"),
    "view-subdir": (plant_view_subdir, f"models/{MODEL}/weights"),
    "registry": (plant_registry, "models/registry.json"),
    "registry-prev": (plant_registry_prev, "models/registry.json.prev"),
    "objects-fan": (plant_objects_fan, ".modelstore/objects/{fan}"),
    "objects-fan-corrupt": (plant_objects_fan_corrupt, ".modelstore/objects/{fan}"),
    "objects-fan-writable": (plant_objects_fan_writable, ".modelstore/objects/{fan}"),
    "object-file": (plant_object_file, ".modelstore/objects/{object}"),
    "objects": (plant_objects, ".modelstore/objects"),
    "tmp": (plant_tmp, ".modelstore/tmp"),
    "quarantine": (plant_quarantine, ".modelstore/quarantine"),
    "quarantine-kind": (plant_quarantine_kind, ".modelstore/quarantine/objects"),
    "lock": (plant_lock, ".modelstore/lock"),
    "models": (plant_models, "models"),
    "store": (plant_store, ".modelstore"),
}

COMMANDS: dict[str, Callable[[Scene], list[str]]] = {
    "import": lambda s: ["import-model", str(s.src), "--name", "other", "-y"],
    "delete": lambda s: ["delete-model", MODEL, "-y", "--delete-files"],
    "gc": lambda s: ["gc", "--grace", "0"],
    "fix": lambda s: ["validate-registry", "--fix", "-y"],
}

R, A = "refuses", "acts"  # refuses naming the link | goes ahead (on the link itself, or elsewhere)
EXPECTED: dict[str, tuple[str, str, str, str]] = {
    #                        import delete gc  fix
    "view-dir":             (A,     A,     A,  A),
    "view-file":            (A,     A,     A,  A),
    "view-subdir":          (A,     A,     A,  A),
    "registry":             (A,     A,     A,  A),
    "registry-prev":        (A,     A,     A,  A),
    "objects-fan":          (R,     A,     A,  A),
    "objects-fan-corrupt":  (R,     A,     A,  R),
    "objects-fan-writable": (R,     A,     A,  R),
    "object-file":          (A,     A,     A,  A),
    "objects":              (R,     R,     R,  A),
    "tmp":                  (R,     R,     R,  A),
    "quarantine":           (R,     R,     R,  R),
    "quarantine-kind":      (A,     A,     A,  R),
    "lock":                 (R,     R,     R,  A),
    "models":               (R,     R,     R,  A),
    "store":                (R,     R,     R,  A),
}
# The pair each plant is most dangerous with: run by default; the whole matrix is slow.
RISKIEST = {"view-dir": "delete", "view-file": "fix", "view-subdir": "fix", "registry": "import",
            "registry-prev": "delete", "objects-fan": "import", "objects-fan-corrupt": "fix",
            "objects-fan-writable": "fix", "object-file": "fix", "objects": "gc", "tmp": "gc",
            "quarantine": "fix", "quarantine-kind": "fix", "lock": "import", "models": "gc", "store": "gc"}


def _link_path(scene: Scene, rel: str) -> Path:
    """The planted link: ``{fan}`` and ``{object}`` stand for whichever one the plant linked."""
    objects = scene.ws / ".modelstore" / "objects"
    if "{fan}" in rel:
        return objects / next(p.name for p in objects.iterdir() if p.is_symlink())
    if "{object}" in rel:
        return next(p for p in objects.glob("*/*") if p.is_symlink())
    return scene.ws / rel


def _refusal(rel: str) -> Callable[[Scene], str]:
    def message(scene: Scene) -> str:
        link = _link_path(scene, rel)
        return (f"error: {link} is a symbolic link to {os.readlink(link)}; modelstore never writes through "
                "links in its own folders")
    return message


def _link_case(plant_id: str, command: str) -> Case:
    plant, rel = PLANTS[plant_id]
    refuses = dict(zip(COMMANDS, EXPECTED[plant_id]))[command] == R
    return Case("symlinks", f"{plant_id}-{command}", COMMANDS[command], 1 if refuses else 0,
                _refusal(rel) if refuses else (lambda scene: ""), prepare=plant, acts=not refuses,
                sole_line=command != "fix")


LINK_CASES = [_link_case(plant_id, command) for plant_id in PLANTS for command in COMMANDS]
RISKIEST_IDS = {f"{plant_id}-{command}" for plant_id, command in RISKIEST.items()}
