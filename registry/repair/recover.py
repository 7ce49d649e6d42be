"""Recovering a damaged or lost ``models/registry.json``.

The evidence, in order of trust:
- the views that still exist: each ``models/<name>/metadata.json`` names its model and the
  manifest digest of its version, and a view is built just before its registry entry is
  committed, so a view is the latest state of its model;
- ``registry.json.prev``, the previous generation, which keeps each entry's exact fields
  (created_at, fine_tuned_from, metadata) when it agrees with the view.

The rule: a model is brought back only if its view still exists and names a manifest that
is present in the store (or, for a view whose metadata.json is damaged, if the previous
generation names such a manifest for it). A view whose manifest gc has collected is what
``delete-model`` left behind, and stays an orphan. A present but damaged manifest still
brings its entry back, so the damage goes on being reported against the model.

Entries of the previous generation whose view is gone are *not* brought back (their
deletion may be the very change the damaged file recorded); they are listed as dropped.
Every entry brought back is listed with where it came from, so nothing is resurrected
silently. A view kept by ``delete-model`` without ``--delete-files`` whose blobs gc has
not collected yet is indistinguishable from a live one, so it comes back too, listed, and
can be deleted again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import msgspec

from registry.ops import summary_metadata
from registry.names import name_problem
from registry.registry_file import (
    SCHEMA_VERSION, RegistryDoc, RegistryEntry, parse_registry, previous_path,
)
from registry.views import view_metadata
from registry.workspace import Workspace
from store.digest import digest_bytes
from registry.errors import RegistryError
from store.errors import ModelStoreError
from store.manifest import Manifest


@dataclass
class RegistryRecovery:
    doc: RegistryDoc  # what will be written
    brought_back: dict[str, str] = field(default_factory=dict)  # name -> where its entry came from
    dropped: dict[str, str] = field(default_factory=dict)  # name in .prev -> why it is not brought back
    damaged_digest: str | None = None  # digest of the damaged file's bytes; None if it is absent
    used_previous: bool = False

    def lines(self) -> list[str]:
        lines = [f"bring back {name!r} ({how})" for name, how in sorted(self.brought_back.items())]
        lines += [f"do not bring back {name!r}: {why}" for name, why in sorted(self.dropped.items())]
        return lines


def plan_recovery(workspace: Workspace) -> RegistryRecovery:
    previous = _previous(workspace)
    try:
        data = workspace.registry_path.read_bytes()
    except FileNotFoundError:
        data = None
    recovery = RegistryRecovery(doc=RegistryDoc(schema_version=SCHEMA_VERSION, models={}),
                                damaged_digest=digest_bytes(data) if data is not None else None,
                                used_previous=previous is not None)
    prev_models = previous.models if previous is not None else {}
    for name in _view_names(workspace):
        found = _entry_from_view(workspace, name)
        from_view, readable = found if found is not None else (None, False)
        prev = prev_models.get(name)
        prev_ok = prev is not None and _present(workspace, prev.manifest)
        if from_view is not None and prev_ok and prev.manifest == from_view.manifest:
            entry, how = prev, "from registry.json.prev, matching its view"
        elif from_view is not None:
            entry = from_view
            how = ("from its view's metadata.json (newer than registry.json.prev)" if prev_ok
                   else "from its view's metadata.json")
        elif prev_ok:
            entry, how = prev, "from registry.json.prev (its view's metadata.json is damaged)"
        else:
            continue  # not a view of any manifest in the store: an orphan, moved aside by repair
        if from_view is not None and not readable:
            how += "; its manifest is damaged"
        entry = _normalized(entry, name)
        recovery.doc.models[name] = entry
        recovery.brought_back[name] = how
    for name in sorted(set(prev_models) - set(recovery.doc.models)):
        view = workspace.models_dir / name
        if not os.path.lexists(view):
            recovery.dropped[name] = f"its view models/{name}/ no longer exists (deleted?)"
        else:
            recovery.dropped[name] = "neither its view nor registry.json.prev names a manifest in the store"
    return recovery


def _previous(workspace: Workspace) -> RegistryDoc | None:
    path = previous_path(workspace.registry_path)
    try:
        return parse_registry(path, path.read_bytes())
    except (OSError, RegistryError):
        return None


def _view_names(workspace: Workspace) -> list[str]:
    if not workspace.models_dir.is_dir():
        return []
    return sorted(e.name for e in os.scandir(workspace.models_dir)
                  if e.is_dir(follow_symlinks=False) and name_problem(e.name) is None)


def _manifest(workspace: Workspace, digest: str) -> Manifest | None:
    try:
        return workspace.manifest(digest)
    except (ModelStoreError, OSError):
        return None


def _present(workspace: Workspace, digest: str) -> bool:
    """The manifest object exists, readable or not (an absent one means gc collected it)."""
    return os.path.lexists(workspace.objects.path(digest))


def _entry_from_view(workspace: Workspace, name: str) -> tuple[RegistryEntry, bool] | None:
    """The entry a view's metadata.json describes, and whether its manifest is readable.

    None unless metadata.json names this view and a manifest object that is present: the
    view of a model whose manifest gc already collected is what delete-model left behind.
    A present but damaged manifest still brings its entry back (from metadata.json alone),
    so validation goes on reporting the damage instead of the model vanishing.
    """
    found = view_metadata(workspace, name)
    if found is None:
        return None
    meta, digest = found
    if not _present(workspace, digest):
        return None
    manifest = _manifest(workspace, digest)
    fields = {key: meta.get(key) for key in ("model_id", "architecture_type", "source", "created_at",
                                              "fine_tuned_from")}
    if manifest is not None:
        fields.update(model_id=manifest.model_id, architecture_type=manifest.architecture_type,
                      source=manifest.source)
        if not isinstance(fields["created_at"], str):
            fields["created_at"] = manifest.created_at
        metadata = summary_metadata(manifest)
    else:
        metadata = {key: meta.get(key) for key in ("license", "model_size", "file_size")}
    try:
        entry = msgspec.convert({**fields, "model_name": name, "local_path": workspace.view_relpath(name),
                                 "manifest": digest, "metadata": metadata}, RegistryEntry)
    except msgspec.ValidationError:
        return None
    return entry, manifest is not None


def _normalized(entry: RegistryEntry, name: str) -> RegistryEntry:
    """The entry with the fields a view name determines set right (local_path)."""
    return msgspec.structs.replace(entry, model_name=name, local_path=f"models/{name}")
