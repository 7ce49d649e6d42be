"""Executing a repair plan, under the writer lock, re-checking each step before it acts.

The plan was made without the lock (planning re-hashes everything, which can take long),
so every step first checks that what it is about to change is still as the plan saw it:
the damaged registry still has the same bytes (else the whole repair stops before
anything changed), an orphan is still unregistered, a corrupt object still fails its
check, a missing object is still missing. Steps run in dependency order: registry,
orphans, quarantine, restore, views, seals, records.
"""

from __future__ import annotations

import os
import stat

from registry.repair.recover import RegistryRecovery
from registry.repair.plan import RepairOutcome, RepairPlan
from registry.report import Reporter
from registry.repair.restore import RestoreSource, restore_objects
from registry.check.view_check import expected_dirs, scan_view
from registry.views import build_view, expected_view, has_legacy_layout
from registry.workspace import Workspace
from store.fs import fsops
from store.digest import digest_bytes
from registry.errors import StoreChangedError
from store.errors import Hint, ModelStoreError, text_of, words
from store.layout import OBJECT_MODE
from store.quarantine import keep_copy, move_aside, quarantined_digests, record_lost


class _Collecting(Reporter):
    """Passes a restore source's status lines, warnings and progress bars on, and keeps the
    warnings for the outcome."""

    def __init__(self, inner: Reporter, kept: list[Hint]):
        self.inner, self.kept = inner, kept

    def status(self, component: str, message: Hint) -> None:
        self.inner.status(component, message)

    def warning(self, message: Hint) -> None:
        self.kept.append(message)
        self.inner.warning(message)

    def progress_bar(self) -> type | None:
        return self.inner.progress_bar()


def execute_repair(workspace: Workspace, plan: RepairPlan, *, sources: list[RestoreSource],
                   reporter: Reporter) -> RepairOutcome:
    outcome = RepairOutcome()
    workspace.ensure_store()
    with workspace.locked():
        if plan.recovery is not None:
            _recover_registry(workspace, plan.recovery, outcome)
        registered = workspace.read_registry().models
        for name in plan.orphans:
            path = workspace.models_dir / name
            if name not in registered and os.path.lexists(path):
                move_aside(workspace.layout, path, "orphans", "not registered", label=name)
                outcome.done.append(f"moved models/{name} to .modelstore/quarantine/orphans/")
        for digest, item in sorted(plan.quarantine.items()):
            if _still_bad(workspace, digest, plan.sizes.get(digest)):
                actual = _actual(workspace, digest)
                move_aside(workspace.layout, workspace.objects.path(digest), "objects", item.message,
                           label=digest[:12], digest=digest, actual=actual, models=list(item.models))
                outcome.done.append(f"moved corrupt object {digest[:12]} to .modelstore/quarantine/objects/")
        _restore(workspace, plan, sources, reporter, outcome)
        for name in plan.views:
            _rebuild_view(workspace, name, outcome)
        for digest in plan.seal:
            path = workspace.objects.path(digest)
            if not _still_bad(workspace, digest, plan.sizes.get(digest)):
                fsops.chmod(path, OBJECT_MODE)
                outcome.done.append(f"sealed object {digest[:12]} read-only")
        lost_already = quarantined_digests(workspace.layout)
        for digest, models in sorted(plan.lost.items()):
            if digest not in lost_already and not workspace.objects.exists(digest):
                record_lost(workspace.layout, digest, "lineage manifest missing; nothing can restore it",
                            list(models))
                outcome.done.append(f"recorded lineage manifest {digest[:12]} as lost")
    return outcome


def _recover_registry(workspace: Workspace, recovery: RegistryRecovery, outcome: RepairOutcome) -> None:
    path = workspace.registry_path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = None
    if (digest_bytes(data) if data is not None else None) != recovery.damaged_digest:
        raise StoreChangedError("models/registry.json")
    if data is not None:
        kept = keep_copy(workspace.layout, path, "registry", "damaged; replaced by a recovered registry")
        outcome.done.append(f"kept the damaged registry.json as {kept.relative_to(workspace.root)}")
    workspace.write_registry(recovery.doc)
    names = ", ".join(sorted(recovery.brought_back)) or "no models"
    outcome.done.append(f"recovered models/registry.json: {names}")


def _still_bad(workspace: Workspace, digest: str, size: int | None) -> bool:
    """True unless the object is now a regular file of the right size that re-hashes right."""
    path = workspace.objects.path(digest)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False  # nothing left to move aside; restore deals with it
    if not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size):
        return True
    return _actual(workspace, digest) != digest


def _actual(workspace: Workspace, digest: str) -> str | None:
    try:
        return workspace.objects.rehash(digest)
    except (ModelStoreError, OSError):
        return None


def _restore(workspace: Workspace, plan: RepairPlan, sources: list[RestoreSource], reporter: Reporter,
             outcome: RepairOutcome) -> None:
    wanted = {d for d in plan.restore if workspace.objects.size(d) != plan.sizes.get(d, -1)}
    collecting = _Collecting(reporter, outcome.warnings)
    done = restore_objects(workspace, wanted, plan.origins, sources, collecting)
    for digest in sorted(wanted):
        if digest in done:
            outcome.done.append(f"restored object {digest[:12]} from {done[digest]}")
        else:
            models = ", ".join(repr(m) for m in plan.restore[digest])
            outcome.failed.append(
                f"object {digest[:12]} ({models}) was not restored (see the warnings); import the model "
                "again from its source with --on-conflict overwrite, or delete it")


def _rebuild_view(workspace: Workspace, name: str, outcome: RepairOutcome) -> None:
    entry = workspace.read_registry().models.get(name)
    if entry is None:
        return
    try:
        manifest = workspace.manifest(entry.manifest)
    except ModelStoreError as e:
        outcome.failed.append(words(f"the view of {name!r} cannot be rebuilt: ", text_of(e)))
        return
    view = workspace.view_path(name)
    if os.path.lexists(view) and (os.path.islink(view) or not os.path.isdir(view)):
        move_aside(workspace.layout, view, "view-files", f"models/{name} was not a folder", label=name)
    elif os.path.isdir(view):
        # An outdated view's links are judged by its own layout: they are replaced, not quarantined.
        spec = expected_view(entry, manifest, legacy=has_legacy_layout(workspace, name))
        dirs = expected_dirs([*spec.links, *spec.generated])
        moved: list[str] = []
        for relpath, kind in sorted(scan_view(view).items()):
            if any(relpath.startswith(m + "/") for m in moved):
                continue
            stray = (relpath not in spec.links and relpath not in spec.generated and relpath not in dirs)
            wrong = ((relpath in spec.links and kind != "link") or (relpath in dirs and kind != "dir")
                     or (relpath in spec.generated and kind != "file"))
            if stray or wrong:
                move_aside(workspace.layout, view / relpath, "view-files",
                           f"found in the view of {name!r} but not part of its manifest",
                           label=f"{name}-{relpath.replace('/', '_')}", models=[name])
                moved.append(relpath)
        for relpath in moved:
            outcome.done.append(f"moved models/{name}/{relpath} to .modelstore/quarantine/view-files/")
    build_view(workspace, entry, manifest)
    outcome.done.append(f"rebuilt the view models/{name}")
