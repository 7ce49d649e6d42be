"""Registering, listing, inspecting and deleting named models.

Write order (DESIGN): blobs -> manifest -> view -> registry entry. The registry replace is
the commit point, and it happens under the writer lock after checking that every object
the manifest needs is present, so a committed entry never points at something missing.
Deletion runs in reverse: registry entry -> view; blobs go only through gc.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from registry.names import validate_name
from registry.registry_file import RegistryEntry
from registry.views import model_file_size, remove_view, view_in_place
from registry.workspace import Workspace
from store.errors import (
    Aborted,
    InvalidNameError,
    ModelExistsError,
    ModelStoreError,
    ModelNotFoundError,
    ObjectMissingError,
    StoreIOError,
    UsageError,
    ViewMissingError,
)
from store.manifest import Manifest, now_iso

ConflictChoice = Literal["overwrite", "rename", "cancel"]
CONFLICT_CHOICES: tuple[ConflictChoice, ...] = ("overwrite", "rename", "cancel")
# A fixed choice, or a function asked with the taken name (the CLI's interactive prompt).
ConflictPolicy = ConflictChoice | Callable[[str], ConflictChoice]


def resolve_conflict(
    workspace: Workspace, name: str, policy: ConflictPolicy,
    same_source: Callable[[Manifest], bool] | None = None,
) -> tuple[str, ConflictChoice | None]:
    """Apply ``policy`` if ``name`` is taken: the name to use and the choice made (or None).

    ``same_source`` says whether the registered version came from where this import reads:
    then the conflict is left for ``register``, which accepts an identical version as a
    no-op, so re-running an import is harmless.
    """
    doc = workspace.read_registry()
    _check_case_collision(doc.models, name)
    if name not in doc.models:
        if os.path.lexists(workspace.view_path(name)):
            raise ModelExistsError(
                name, f"models/{name} exists but is not registered",
                "move it away, or run `python main.py validate-registry --fix` to adopt or set it aside",
            )
        return name, None
    if same_source is not None and policy == "cancel":
        try:
            if same_source(workspace.manifest(doc.models[name].manifest)):
                return name, None
        except ModelStoreError:
            pass  # an unreadable manifest is validate-registry's business; treat as a conflict
    choice = policy(name) if callable(policy) else policy
    if choice not in CONFLICT_CHOICES:
        raise UsageError(f"unknown conflict choice {choice!r}", "use overwrite, rename or cancel")
    if choice == "cancel":
        raise ModelExistsError(name)
    if choice == "rename":
        return _free_name(workspace, doc.models, name), "rename"
    return name, "overwrite"


def _free_name(workspace: Workspace, taken: dict[str, Any], name: str) -> str:
    lowered = {n.lower() for n in taken}
    for i in range(2, 10_000):
        suffix = f"-{i}"
        candidate = validate_name(name[: 100 - len(suffix)] + suffix)
        if candidate.lower() not in lowered and not os.path.lexists(workspace.view_path(candidate)):
            return candidate
    raise ModelExistsError(name)


def _check_case_collision(models: dict[str, Any], name: str) -> None:
    for existing in models:
        if existing != name and existing.lower() == name.lower():
            raise InvalidNameError(
                name, f"it differs only by case from the registered model {existing!r} "
                "(they would collide on case-insensitive filesystems)"
            )


def register(
    workspace: Workspace,
    name: str,
    manifest_digest: str,
    manifest: Manifest,
    *,
    fine_tuned_from: str | None = None,
    metadata: dict[str, Any] | None = None,
    on_conflict: ConflictPolicy = "cancel",
    on_wait: Callable[[], None] | None = None,
) -> RegistryEntry:
    """Commit a stored manifest under ``name``: check objects, build the view, update registry.

    If ``name`` already holds the same version (equal but for its creation time), nothing
    changes and the existing entry is returned: importing the same thing twice, or from
    several processes at once, is not a conflict. Only an explicit "rename" still asks for
    a second name.
    """
    validate_name(name)
    with workspace.locked(on_wait):
        existing = workspace.read_registry().models.get(name)
        if on_conflict != "rename" and existing is not None and _same_version(workspace, existing, manifest):
            return existing
        name, _ = resolve_conflict(workspace, name, on_conflict)
        _check_objects(workspace, manifest_digest, manifest)
        entry = RegistryEntry(
            model_name=name,
            model_id=manifest.model_id,
            architecture_type=manifest.architecture_type,
            local_path=workspace.view_relpath(name),
            source=manifest.source,
            created_at=now_iso(),
            manifest=manifest_digest,
            fine_tuned_from=fine_tuned_from,
            metadata=summary_metadata(manifest) | (metadata or {}),
        )
        # The view is taken back if the registry write fails (a full disk): no unregistered
        # view is left in the way of running the same command again.
        with view_in_place(workspace, entry, manifest):
            doc = workspace.read_registry()  # re-read: a writer without the lock may have changed it
            doc.models[name] = entry
            workspace.write_registry(doc)
    return entry


def _same_version(workspace: Workspace, entry: RegistryEntry, manifest: Manifest) -> bool:
    try:
        current = workspace.manifest(entry.manifest)
    except ModelStoreError:
        return False
    return current.same_version(manifest) and os.path.isdir(workspace.root / entry.local_path)


def _check_objects(workspace: Workspace, manifest_digest: str, manifest: Manifest) -> None:
    """Every object the entry will reference must be present with its size, right now."""
    sizes = manifest.expected_sizes()
    sizes[manifest_digest] = workspace.objects.size(manifest_digest) or -1
    for digest, size in sizes.items():
        actual = workspace.objects.size(digest)
        if actual is None or actual != size:
            raise ObjectMissingError(digest, workspace.objects.path(digest))


def summary_metadata(manifest: Manifest) -> dict[str, Any]:
    dtypes: dict[str, int] = {}
    for t in manifest.tensors.values():
        dtypes[t.dtype] = dtypes.get(t.dtype, 0) + t.nbytes
    return {
        "license": manifest.license,
        "model_size": manifest.params,
        "file_size": model_file_size(manifest),
        "dtype": max(dtypes, key=dtypes.get) if dtypes else None,
    }


# --- reading -------------------------------------------------------------------------------


def get_entry(workspace: Workspace, name: str) -> RegistryEntry:
    models = workspace.read_registry().models
    entry = models.get(name)
    if entry is None:
        raise ModelNotFoundError(name, difflib.get_close_matches(name, list(models), n=2))
    return entry


def get_model(workspace: Workspace, name: str) -> tuple[RegistryEntry, Manifest]:
    """The entry and its manifest; checks that the view (local_path) exists."""
    entry = get_entry(workspace, name)
    view = workspace.root / entry.local_path
    if not view.is_dir():
        raise ViewMissingError(name, view)
    return entry, workspace.manifest(entry.manifest)


def list_models(
    workspace: Workspace, *, architecture: str | None = None, source: str | None = None
) -> list[RegistryEntry]:
    """Registered models, most recently registered first, optionally filtered."""
    entries = [
        e for e in workspace.read_registry().models.values()
        if (architecture is None or e.architecture_type == architecture)
        and (source is None or e.source == source)
    ]
    return sorted(entries, key=lambda e: (e.created_at, e.model_name), reverse=True)


@dataclass
class DeleteResult:
    entry: RegistryEntry
    view_removed: bool
    children: list[str] = field(default_factory=list)  # models fine-tuned from it


def delete_model(
    workspace: Workspace, name: str, *, delete_files: bool = False,
    confirm: Callable[[RegistryEntry, list[str]], bool] | None = None,
) -> DeleteResult:
    """Remove ``name`` from the registry (and its view with ``delete_files``).

    ``confirm`` is asked with the entry and the names of models fine-tuned from it; a
    False answer raises ``Aborted`` before anything changes. Blobs stay until ``gc``.
    """
    from registry.lineage import children_of

    with workspace.locked():
        entry = get_entry(workspace, name)
        children = children_of(workspace, name)
        if confirm is not None and not confirm(entry, children):
            raise Aborted(f"model {name!r} was not deleted")
        doc = workspace.read_registry()
        doc.models.pop(name, None)
        workspace.write_registry(doc)  # the commit point
        try:
            view_removed = remove_view(workspace, name) if delete_files else False
        except StoreIOError as e:
            raise e.after_commit(
                f"{name!r} is deleted, but removing its view {entry.local_path}/ failed; free some disk "
                "space, then `python main.py validate-registry` lists what is left and how to remove it"
            ) from e
    return DeleteResult(entry=entry, view_removed=view_removed, children=children)
