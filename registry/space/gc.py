"""``gc``: delete the objects no registry entry can reach, old temp files, and what --fix
quarantined longer ago than the grace period.

Reachable (``registry.space.reachable``): each registered manifest, its files, tensors and
optimizer state, and the manifests of its lineage. gc deletes nothing when it cannot know
that set for sure: a damaged or lost registry.json, or a manifest that cannot be read
(registered, or in a lineage), aborts it. The only exception is a lineage manifest that
``validate-registry --fix`` has recorded as lost: that history is known to be gone.

The reachable set, the plan and the deletions all happen under the writer lock, so no
registration commits in between; a grace period (default one hour) spares every object
and temp file younger than that, so an import in flight (blobs written, manifest not yet
registered) is never broken. ``--dry-run`` plans without the lock and deletes nothing.
A view a crashed write placed but never committed (``view-uncommitted``) keeps its version's
objects too: collecting them would leave that view's links dangling, until ``--fix`` or the
write, re-run, settles it.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from registry.space.reachable import reachable
from registry.check.registry_check import lost_registry
from registry.report import NoProgress, NullReporter, Reporter
from registry.check.validate import view_debris
from registry.check.view_check import view_version
from registry.workspace import Workspace
from store.fs import fsops
from registry.errors import GcAbortedError, RegistryError
from store.errors import ObjectMissingError
from store.gc import DEFAULT_GRACE_S, GcPlan, GcResult, plan_gc, sweep
from store.quarantine import quarantined_digests


@dataclass
class GcOutcome:
    plan: GcPlan
    result: GcResult | None  # None for a dry run
    skipped_lineage: list[str]  # lineage manifests recorded lost, passed over


def collect_garbage(workspace: Workspace, *, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False,
                    reporter: Reporter | None = None) -> GcOutcome:
    reporter = reporter or NullReporter()
    if not workspace.layout.format_file.exists():
        return GcOutcome(GcPlan(grace_s=grace_s, reachable=0), None if dry_run else GcResult(), [])
    fsops.require_real_dir(workspace.models_dir)  # as a link, it would hand gc debris outside the store
    on_wait = lambda: reporter.status("lock", "waiting for another modelstore writer")  # noqa: E731
    with nullcontext() if dry_run else workspace.locked(on_wait):
        if lost_registry(workspace):
            raise RegistryError(workspace.registry_path, "it is missing, but models/ still holds views "
                                "(gc would take every model's objects)")
        graph = reachable(workspace, workspace.read_registry())
        lost = quarantined_digests(workspace.layout) if graph.unreadable else set()
        problems, skipped = [], []
        for digest, error in sorted(graph.unreadable.items()):
            lineage_only = digest not in graph.registered
            if lineage_only and isinstance(error, ObjectMissingError) and digest in lost:
                skipped.append(digest)
                continue
            names = sorted(graph.registered.get(digest) or graph.needed_by.get(digest, ()))
            role = "manifest" if not lineage_only else "lineage manifest"
            problems.append(f"{role} {digest[:12]} of {', '.join(repr(n) for n in names)} cannot be read "
                            f"({error.message})")
        if problems:
            raise GcAbortedError(problems)
        keep = graph.keep() | uncommitted_objects(workspace)
        plan = plan_gc(workspace.layout, keep, grace_s, extra_temp=view_debris(workspace))
        if dry_run:
            return GcOutcome(plan, None, skipped)
        with reporter.progress("gc", sum(d.size for d in plan.objects)) if plan.objects else NoProgress() as bar:
            result = sweep(workspace.layout, plan, on_bytes=bar.update)
    return GcOutcome(plan, result, skipped)


def uncommitted_objects(workspace: Workspace) -> set[str]:
    """The manifests and objects of versions that registered models' views show uncommitted."""
    keep: set[str] = set()
    for name, entry in workspace.read_registry().models.items():
        shown = view_version(workspace, name)
        if shown is not None and shown[0] != entry.manifest:
            keep |= {shown[0], *shown[1].object_digests()}
    return keep
