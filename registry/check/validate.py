"""``validate-registry``: check the whole workspace against the store's promises, read-only.

Every registry entry resolves to a manifest that hashes to its name and decodes; every
object a registered manifest references exists with the right size and (deep check, the
default) re-hashes to its name; every view matches its manifest; the manifests of every
lineage are readable. Notes list what breaks nothing: orphan directories under models/,
unreferenced objects, temp debris, quarantined items. Nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from registry import debris
from registry.check.findings import Finding, ValidationReport, finding
from registry.names import STORE_FILES
from registry.space.reachable import Reachable, reachable
from registry.repair.recover import plan_recovery
from registry.check.registry_check import RegistryCheck, check_registry
from registry.registry_file import RegistryDoc
from registry.report import NoProgress, NullReporter, Reporter, human_bytes, plural
from registry.check.view_check import check_view
from registry.workspace import Workspace
from store.errors import CorruptObjectError, ModelStoreError, Next, ObjectMissingError, Text
from store.manifest import LocalOrigin
from store.quarantine import list_quarantine, quarantined_digests
from store.verify import ObjectCheck, check_objects, inventory, stray_entries

# Leftovers of views.build_view / remove_view interrupted by a crash (see registry/views.py).


def validate(workspace: Workspace, *, deep: bool = True, reporter: Reporter | None = None,
             registry: RegistryCheck | None = None, doc: RegistryDoc | None = None) -> ValidationReport:
    """Check everything, read-only; ``doc`` replaces the registry's entries when given."""
    return check_workspace(workspace, deep=deep, reporter=reporter, registry=registry, doc=doc)[0]


def check_workspace(workspace: Workspace, *, deep: bool = True, reporter: Reporter | None = None,
                    registry: RegistryCheck | None = None, doc: RegistryDoc | None = None,
                    ) -> tuple[ValidationReport, Reachable | None]:
    """``validate``, also returning what the registry reaches (None for a newer schema)."""
    reporter = reporter or NullReporter()
    check = registry or check_registry(workspace)
    report = ValidationReport(findings=list(check.findings), deep=deep)
    if check.newer:  # nothing else can be interpreted safely
        return report, None
    if doc is None:
        # A damaged registry is judged by what --fix would recover, so the report shows
        # every model the views still hold instead of calling them all orphans.
        doc = plan_recovery(workspace).doc if check.damaged else check.doc
    graph = reachable(workspace, doc)
    report.models = len(doc.models)
    report.findings += manifest_findings(workspace, graph)

    expected: dict[str, int | None] = {}
    for digest in graph.registered:
        if digest in graph.manifests:
            expected.update(graph.manifests[digest].expected_sizes())
    total = sum(size or 0 for size in expected.values())
    if deep and expected:
        reporter.status("verify", f"re-hashing {len(expected)} objects ({human_bytes(total)})")
    with reporter.progress("verify", total) if deep and expected else NoProgress() as bar:
        checks = check_objects(workspace.objects, expected, deep=deep, on_bytes=bar.update)
    report.findings += object_findings(workspace, graph, checks)
    manifest_sizes = [workspace.objects.size(d) or 0 for d in graph.manifests]
    report.objects = len(set(expected) | set(graph.manifests))
    report.bytes = total + sum(manifest_sizes)

    for name, entry in sorted(doc.models.items()):
        report.findings += check_view(workspace, entry, graph.manifests.get(entry.manifest))
    report.findings += orphan_findings(workspace, doc)
    report.findings += store_notes(workspace, graph)
    return report, graph


def manifest_findings(workspace: Workspace, graph: Reachable) -> list[Finding]:
    found = []
    lost = quarantined_digests(workspace.layout) if graph.unreadable else set()
    for digest, error in sorted(graph.unreadable.items()):
        path = str(workspace.objects.path(digest).relative_to(workspace.root))
        kind = ("missing" if isinstance(error, ObjectMissingError)
                else "corrupt" if isinstance(error, CorruptObjectError) else "invalid")
        what = {"missing": "is missing", "corrupt": "is corrupt (its bytes do not hash to its name)",
                "invalid": f"does not decode ({getattr(error, 'reason', error)})"}[kind]
        names = graph.registered.get(digest)
        if not names and kind == "missing" and digest in lost:
            found.append(finding("lineage-lost", f"manifest {digest[:12]} in the lineage of "
                                 f"{_names(graph.needed_by.get(digest, ()))} is gone (recorded in "
                                 ".modelstore/quarantine/); the lineage shows it as unreadable",
                                 models=sorted(graph.needed_by.get(digest, ())), digest=digest, path=path))
            continue
        if names:
            found.append(finding(f"manifest-{kind}", f"manifest {digest[:12]} of {_names(names)} {what} "
                                 f"[{path}]", models=names, digest=digest, path=path))
        else:
            needing = sorted(graph.needed_by.get(digest, ()))
            found.append(finding(f"lineage-{kind}", f"manifest {digest[:12]} in the lineage of "
                                 f"{_names(needing)} {what}; gc refuses to run until it is resolved "
                                 f"[{path}]", models=needing, digest=digest, path=path))
    return found


def object_findings(workspace: Workspace, graph: Reachable, checks: dict[str, ObjectCheck]) -> list[Finding]:
    owners = graph.owners()
    found = []
    for digest, check in sorted(checks.items()):
        models = sorted({name for name, _ in owners.get(digest, [])})
        path = str(workspace.objects.path(digest).relative_to(workspace.root))
        subject = f"{describe_owners(owners.get(digest, []))} (object {digest[:12]})"
        if check.state == "ok":
            if check.writable:
                found.append(finding("object-writable", f"{subject} is writable; its bytes verified, "
                                     f"and `--fix` seals it read-only again [{path}]",
                                     models=models, digest=digest, path=path))
            continue
        if check.state == "missing":
            message = f"{subject} is missing"
        elif check.state == "not-file":
            message = f"{subject} is corrupt: it is not a regular file"
        elif check.state == "size":
            how = "truncated" if (check.size or 0) < (check.expected_size or 0) else "extended"
            message = f"{subject} has {check.size} bytes instead of {check.expected_size} ({how})"
        elif check.actual is None:
            message = f"{subject} is corrupt: its bytes cannot be read"
        else:
            message = f"{subject} is corrupt: its bytes hash to {check.actual[:12]}"
        if check.actual and check.actual != digest and workspace.objects.exists(check.actual):
            message += f", the bytes of another object ({check.actual[:12]})"
        code = {"missing": "object-missing", "size": "object-size"}.get(check.state, "object-corrupt")
        found.append(finding(code, f"{message} [{path}]", models=models, digest=digest, path=path))
    return found


def orphan_findings(workspace: Workspace, doc: RegistryDoc) -> list[Finding]:
    found = []
    sources = _local_sources(workspace, doc)
    for entry in _models_entries(workspace):
        if entry.name.startswith(".") or entry.name.lower() in STORE_FILES or entry.name in doc.models:
            continue
        if os.path.abspath(entry.path) in sources:
            continue  # the folder a registered model was imported from: the user's, not debris
        kind = "folder" if entry.is_dir(follow_symlinks=False) else "file"
        rel = f"models/{entry.name}"
        found.append(finding("orphan-directory", f"{rel} ({kind}) is not registered; `--fix` moves it to "
                             ".modelstore/quarantine/orphans/", path=rel))
    return found


def _local_sources(workspace: Workspace, doc: RegistryDoc) -> set[str]:
    """The folders under models/ that registered models were imported from (``import-model
    ./models/my-model``): never orphans, so --fix never moves a user's source folder away."""
    found = set()
    models_dir = os.path.abspath(workspace.models_dir)
    for entry in doc.models.values():
        try:
            origin = workspace.manifest(entry.manifest).origin
        except ModelStoreError:
            continue
        path = getattr(origin, "path", None)
        if isinstance(origin, LocalOrigin) and path and os.path.dirname(os.path.abspath(path)) == models_dir:
            found.add(os.path.abspath(path))
    return found


def view_debris(workspace: Workspace) -> list[Path]:
    return [Path(e.path) for e in _models_entries(workspace) if debris.is_debris(e.name)]


def store_notes(workspace: Workspace, graph: Reachable) -> list[Finding]:
    layout = workspace.layout
    found = []
    if not graph.unreadable:  # with a manifest unreadable, reachability is unknown
        keep = graph.keep()
        unreferenced = [o for o in inventory(workspace.objects) if o.digest not in keep]
        if unreferenced:
            size = human_bytes(sum(o.size for o in unreferenced))
            verb, them = ("is", "it") if len(unreferenced) == 1 else ("are", "them")
            found.append(finding("object-unreferenced", Text(f"{plural(len(unreferenced), 'object')} ({size}) "
                                 f"{verb} not reached by any registered model; `", Next("gc"), f"` removes {them}"),
                                 path=".modelstore/objects"))
    for path in (layout.store, layout.objects, layout.tmp, layout.quarantine, layout.lock_file,
                 workspace.models_dir):
        if path.is_symlink():
            rel = str(path.relative_to(workspace.root))
            found.append(finding("store-link", f"{rel} is a symbolic link to {os.readlink(path)}; commands "
                                 "that write refuse to go through it: move it away", path=rel))
    for stray in stray_entries(workspace.objects):
        rel = str(stray.relative_to(workspace.root))
        what = (f"is a symbolic link to {os.readlink(stray)}, which modelstore never writes through "
                "(imports and repairs that need it refuse): move it away" if stray.is_symlink()
                else "is not named like an object; modelstore leaves it alone")
        found.append(finding("object-stray", f"{rel} {what}", path=rel))
    temp = (sorted(layout.tmp.iterdir()) if layout.tmp.is_dir() else []) + view_debris(workspace)
    if temp:
        found.append(finding("temp-debris", f"{plural(len(temp), 'temp file or folder', 'temp files or folders')} in .modelstore/tmp and "
                             "models/ (from interrupted or running writes); gc removes them once an hour "
                             "old", path=".modelstore/tmp"))
    quarantined = list_quarantine(layout)
    if quarantined:
        size = human_bytes(sum(q.size for q in quarantined))
        found.append(finding("quarantine", f"{plural(len(quarantined), 'item')} ({size}) set aside by --fix in "
                             ".modelstore/quarantine/ (each with a record.json); delete them when you no "
                             "longer need them", path=".modelstore/quarantine"))
    return found


def _models_entries(workspace: Workspace) -> list[os.DirEntry]:
    if not workspace.models_dir.is_dir():
        return []
    return sorted(os.scandir(workspace.models_dir), key=lambda e: e.name)


def _names(names) -> str:
    names = sorted(names)
    label = "model" if len(names) == 1 else "models"
    return f"{label} " + ", ".join(repr(n) for n in names) if names else "no registered model"


def describe_owners(owned: list[tuple[str, str]]) -> str:
    """'weights/x.safetensors of model 'a'' for one owner, grouped by item for several."""
    by_item: dict[str, list[str]] = {}
    for name, item in owned:
        by_item.setdefault(item, []).append(name)
    if not by_item:
        return "an object"
    return "; ".join(f"{item} of {_names(names)}" for item, names in sorted(by_item.items()))
