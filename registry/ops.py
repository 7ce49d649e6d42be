"""Registering, listing, inspecting and deleting named models.

Write order (DESIGN): blobs -> manifest -> view -> registry entry. The registry replace is
the commit point, and it happens under the writer lock after checking that every object
the manifest needs is present, so a committed entry never points at something missing.
Deletion runs in reverse: registry entry -> view; blobs go only through gc.

A crash between placing a view and committing its entry leaves the view unregistered (or,
replacing a registered model, showing the uncommitted version): validation notes it, and
the next write of that name replaces it (``view_check.leftover_view``). A crash after a
delete's commit leaves the view (or its half-removed remains): re-running the delete
finishes it. So re-running an interrupted command is always the way to finish it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from registry import debris
from registry.names import validate_name
from registry.registry_file import RegistryDoc, RegistryEntry, previous_path, read_registry
from registry.views import (
    METADATA_FILENAME,
    build_view,
    model_file_size,
    remove_view,
    view_in_place,
    view_is_disposable,
)
from registry.workspace import Workspace, get_entry
from store.fs import fsops
from store.digest import digest_bytes, is_digest
from registry.errors import Aborted, InvalidNameError, ModelExistsError, RegistryError, ViewMissingError
from store.errors import (
    FIX,
    VALIDATE,
    Text,
    ModelStoreError,
    REMOVED_IN_FLIGHT_HINT,
    ObjectMissingError,
    StoreIOError,
    UsageError,
)
from store.manifest import Manifest, encode_manifest, now_iso, put_manifest

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
    no-op, so re-running an import is harmless, and an interactive policy is not asked.
    """
    doc = workspace.read_registry()
    _check_case_collision(doc.models, name)
    if name not in doc.models:
        if not view_is_disposable(workspace, name):
            raise ModelExistsError(
                name, f"models/{name} exists but is not registered",
                Text("move it away, or run `", FIX, "` to adopt or set it aside"),
            )
        return name, None
    if same_source is not None and policy != "rename":
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


def free_name(workspace: Workspace, name: str) -> str:
    """The name "rename" would pick for a taken ``name`` (NAME-2, NAME-3, ...)."""
    return _free_name(workspace, workspace.read_registry().models, name)


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
    manifest_digest: str | None,
    manifest: Manifest,
    *,
    fine_tuned_from: str | None = None,
    metadata: dict[str, Any] | None = None,
    on_conflict: ConflictPolicy = "cancel",
    on_wait: Callable[[], None] | None = None,
) -> RegistryEntry:
    """Commit a manifest under ``name``: check objects, build the view, update registry.

    ``manifest_digest`` None stores the manifest here, under the lock and only if it is
    needed, so a repeated or concurrent import of what is registered leaves no second copy.
    If ``name`` already holds the same version (equal but for its creation time), nothing
    changes and the existing entry is returned: importing the same thing twice, or from
    several processes at once, is not a conflict. Only an explicit "rename" still asks for
    a second name.
    """
    validate_name(name)
    with workspace.locked(on_wait):
        if not workspace.registry_path.exists():
            from registry.check.registry_check import lost_registry  # (checks: imported when needed)

            if lost_registry(workspace):
                raise RegistryError(workspace.registry_path, "it is missing, but models/ still holds views",
                                    Text("run `", FIX, "` to recover it first"))
            # The store's first model: commit an empty registry before its view appears, so a
            # crash in between leaves an unregistered view, not what looks like a lost registry.
            workspace.write_registry(workspace.read_registry())
        existing = workspace.read_registry().models.get(name)
        if on_conflict != "rename" and existing is not None and _same_version(workspace, existing, manifest):
            return existing
        # Read again: a writer without the lock may have registered this very version since.
        same = None if on_conflict == "rename" else manifest.same_version
        name, _ = resolve_conflict(workspace, name, on_conflict, same_source=same)
        entry = RegistryEntry(
            model_name=name,
            model_id=manifest.model_id,
            architecture_type=manifest.architecture_type,
            local_path=workspace.view_relpath(name),
            source=manifest.source,
            created_at=now_iso(),
            manifest=manifest_digest or digest_bytes(encode_manifest(manifest)),
            fine_tuned_from=fine_tuned_from,
            metadata=summary_metadata(manifest) | (metadata or {}),
        )
        # models/<name> may hold the view of this very version already: left by a
        # registration interrupted before its registry entry or, without the lock, being
        # committed by another writer right now. Then its entry is the one to register:
        # replacing the view would leave registry and view from two different writers.
        view = workspace.view_path(name)
        adopted = _entry_of_view(workspace, name, manifest, entry) if os.path.lexists(view) else None
        if adopted is None and manifest_digest is None:
            put_manifest(workspace.objects, manifest)
        entry = adopted or entry
        _check_objects(workspace, entry.manifest, manifest)
        # A view this call places is taken back if the registry write fails (a full disk), so
        # no unregistered view is left in the way of running the same command again.
        with ExitStack() as placed_views:
            # Into an empty place only, unless another version's view is there to replace: a
            # view placed meanwhile (by a writer without the lock) may be this version's.
            if adopted is None and not placed_views.enter_context(
                    view_in_place(workspace, entry, manifest, replace=os.path.lexists(view))):
                adopted = _entry_of_view(workspace, name, manifest, entry)
                if adopted is None:
                    placed_views.enter_context(view_in_place(workspace, entry, manifest))
                entry = adopted or entry
            doc = workspace.read_registry()  # re-read: a writer without the lock may have changed it
            doc.models[name] = entry
            _commit(workspace, doc)
    return entry


def _commit(workspace: Workspace, doc: RegistryDoc) -> None:
    """Replace the registry (the commit point), then rebuild the view of any entry just
    written that has none.

    With the lock that never happens (but for a view removed by hand). Without it, two
    races leave a registered name without its view: a delete-model --delete-files of the
    name a concurrent import is committing, and a registry write that overtook a delete
    (the lost update: the entry comes back from the copy read earlier) after the delete
    removed the view. Rebuilding makes the outcome whole: the delete lost entirely, never
    half applied. Only entries the registry still holds as written are rebuilt, so a
    delete that came after this write keeps its effect.
    """
    workspace.write_registry(doc)
    try:
        current = workspace.read_registry().models
    except ModelStoreError:
        return  # validate-registry's business; this write has committed
    for name, entry in sorted(doc.models.items()):
        if current.get(name) == entry and not os.path.lexists(workspace.view_path(name)):
            try:
                manifest = workspace.manifest(entry.manifest)
            except ModelStoreError:
                continue
            try:
                build_view(workspace, entry, manifest)
            except StoreIOError as e:
                raise e.after_commit() from e


def _entry_of_view(workspace: Workspace, name: str, manifest: Manifest,
                   entry: RegistryEntry) -> RegistryEntry | None:
    """The entry that the view in ``models/<name>`` was built for, if it is exactly the view
    of a version equal to ``manifest`` (its metadata.json names its manifest and creation)."""
    from registry.check.view_check import check_view

    try:
        meta = json.loads((workspace.view_path(name) / METADATA_FILENAME).read_bytes())
        digest, created_at = meta["manifest"], meta["created_at"]
        if not is_digest(digest) or not isinstance(created_at, str):
            return None
        other = workspace.manifest(digest)
    except (OSError, ValueError, KeyError, TypeError, ModelStoreError):
        return None
    candidate = msgspec.structs.replace(entry, manifest=digest, created_at=created_at)
    if not other.same_version(manifest):
        return None
    try:
        problems = check_view(workspace, candidate, other)
    except OSError:  # the view went while it was read (a delete without the lock)
        return None
    return None if problems else candidate


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
            raise ObjectMissingError(digest, workspace.objects.path(digest), REMOVED_IN_FLIGHT_HINT)


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
    entry: RegistryEntry | None  # None: an earlier delete had committed (see ``delete_model``)
    view_removed: bool
    children: list[str] = field(default_factory=list)  # models fine-tuned from it


def delete_model(
    workspace: Workspace, name: str, *, delete_files: bool = False,
    confirm: Callable[[RegistryEntry, list[str]], bool] | None = None,
    on_wait: Callable[[], None] | None = None,
) -> DeleteResult:
    """Remove ``name`` from the registry (and its view with ``delete_files``).

    ``confirm`` is asked with the entry and the names of models fine-tuned from it; a
    False answer raises ``Aborted`` before anything changes. Blobs stay until ``gc``.
    ``on_wait`` is called if another writer holds the lock (the CLI says it waits).
    """
    if not workspace.layout.exists():
        get_entry(workspace, name)  # no store: refused before the lock, which would create one
    with workspace.locked(on_wait):
        finished = _finish_committed_delete(workspace, name, delete_files)
        if finished is not None:
            return finished
        entry = get_entry(workspace, name)
        from registry.lineage import children_of

        children = children_of(workspace, name)
        if confirm is not None and not confirm(entry, children):
            raise Aborted(f"model {name!r} was not deleted")
        doc = workspace.read_registry()
        doc.models.pop(name, None)
        _commit(workspace, doc)
        try:
            view_removed = remove_view(workspace, name) if delete_files else False
        except StoreIOError as e:
            raise e.after_commit(Text(
                f"{name!r} is deleted, but removing its view {entry.local_path}/ failed; free some disk "
                "space, then `", VALIDATE, "` lists what is left and how to remove it"
            )) from e
    return DeleteResult(entry=entry, view_removed=view_removed, children=children)


def _finish_committed_delete(workspace: Workspace, name: str, delete_files: bool) -> DeleteResult | None:
    """Re-running a delete whose commit went through (then a crash): remove what is left of
    the view (with ``delete_files``) and report it done. None unless ``name`` is unregistered
    and something shows it was deleted: its view or a half-removed one still in models/, or
    the registry's previous generation, the one that delete replaced, still naming it."""
    if name in workspace.read_registry().models or not workspace.models_dir.is_dir():
        return None
    remains = [workspace.models_dir / e.name for e in os.scandir(workspace.models_dir)
               if debris.is_deleted_view(e.name, name)]
    from registry.check.view_check import leftover_view

    if leftover_view(workspace, name):
        remains.append(workspace.view_path(name))
    try:
        previous = read_registry(previous_path(workspace.registry_path)).models
    except RegistryError:
        previous = {}
    if not remains and name not in previous:
        return None
    if delete_files and remains:
        for path in sorted(remains):
            fsops.rmtree(path)
        fsops.fsync_dir(workspace.models_dir)
    return DeleteResult(entry=None, view_removed=delete_files and bool(remains))
