"""``validate-registry --fix``: plan the repair from the findings, show it, then execute it.

What each finding leads to:
- a damaged or lost registry.json: recovered from the views that still exist and
  ``registry.json.prev`` (``registry.repair.recover``), listing every entry brought back or
  dropped; the damaged file is kept in quarantine. A registry written by a newer
  modelstore is never touched;
- a corrupt object (wrong size, wrong bytes, not a file): moved to quarantine, never
  deleted, then restored like a missing one;
- a missing object: restored from the origin of a manifest that references it
  (``registry.repair.restore``: the local source folder if its bytes still hash right; the Hub
  once its restorer is wired);
- a damaged or missing view: rebuilt from the manifest; what does not belong in it (extra
  files, links replaced by files) is moved to quarantine first;
- an orphan directory under models/: moved to quarantine. It is registered only as part of
  a registry recovery, when it is a view of a readable manifest (see ``registry.repair.recover``);
- a writable object that still verifies: sealed read-only again;
- a lineage manifest that is gone: recorded as lost, so gc can run again.
What no step can repair (a registered model's manifest, an object nothing can restore) is
reported with the models it affects and the command that fixes it.

Only objects that fail verification are touched, so a model that verified before the
repair is never lost by it; a clean store gives an empty plan, and a second run finds
nothing left that it can change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.check.findings import Finding, ValidationReport
from registry.space.reachable import Reachable
from registry.repair.recover import RegistryRecovery, plan_recovery
from registry.check.registry_check import check_registry
from registry.report import NullReporter, Reporter
from registry.repair.restore import RestoreSource
from registry.repair.sources import default_sources
from registry.check.validate import check_workspace, describe_owners
from registry.workspace import Workspace
from store.errors import Hint, Next, Text
from store.manifest import HubOrigin, LocalOrigin, Manifest, TrainingOrigin


@dataclass(frozen=True)
class Step:
    kind: str  # recover-registry, move-orphan, quarantine-object, restore-object, rebuild-view, ...
    text: str
    destructive: bool  # moves or replaces something (it is kept in quarantine); asks first
    models: tuple[str, ...] = ()
    digest: str | None = None
    path: str | None = None


@dataclass
class RepairPlan:
    recovery: RegistryRecovery | None = None
    orphans: list[str] = field(default_factory=list)  # names under models/
    quarantine: dict[str, Finding] = field(default_factory=dict)  # digest -> why
    restore: dict[str, tuple[str, ...]] = field(default_factory=dict)  # digest -> models needing it
    views: list[str] = field(default_factory=list)
    seal: list[str] = field(default_factory=list)
    lost: dict[str, tuple[str, ...]] = field(default_factory=dict)  # lineage manifest -> models
    cannot: list[Hint] = field(default_factory=list)  # what no step repairs, and what to do
    origins: list[Manifest] = field(default_factory=list)  # manifests whose origins restore
    sizes: dict[str, int] = field(default_factory=dict)  # digest -> size a restored object has
    context: _Context | None = field(default=None, repr=False)  # names objects and sources in the text

    @property
    def steps(self) -> list[Step]:
        """What the plan does, in order, as shown: derived from the fields above (the ones the
        steps execute), so the text can never say something else than what runs."""
        return _steps(self, self.context) if self.context is not None else []

    @property
    def empty(self) -> bool:
        return not self.steps

    @property
    def destructive(self) -> bool:
        return any(step.destructive for step in self.steps)


def plan_repair(workspace: Workspace, *, deep: bool = True, reporter: Reporter | None = None,
                sources: list[RestoreSource] | None = None) -> tuple[ValidationReport, RepairPlan]:
    """Validate, and plan what ``--fix`` would do about every finding. Changes nothing."""
    sources = default_sources(workspace) if sources is None else sources
    check = check_registry(workspace)
    plan = RepairPlan()
    if check.newer:
        plan.cannot.append("models/registry.json was written by a newer modelstore, so it is left as it "
                           "is: upgrade modelstore (if no newer version wrote it, move the file aside and "
                           "run --fix again to recover it from the views)")
    elif check.damaged:
        plan.recovery = plan_recovery(workspace)
    report, graph = check_workspace(workspace, deep=deep, reporter=reporter, registry=check,
                                    doc=plan.recovery.doc if plan.recovery else None)
    if graph is None:
        return report, plan
    # Registered models' origins are tried first, then those of their lineage.
    by_role = sorted(graph.manifests, key=lambda d: not graph.is_registered(d))
    plan.origins = [graph.manifests[d] for d in by_role]
    for digest in graph.registered:
        if digest in graph.manifests:
            plan.sizes.update(graph.manifests[digest].expected_sizes())
    context = _Context(graph, sources, plan.origins)
    for item in report.findings:
        _plan_finding(plan, item, context)
    plan.context = context
    return report, plan


class _Context:
    """What planning looks things up in, indexed once: owners and holders of each object."""

    def __init__(self, graph: Reachable, sources: list[RestoreSource], origins: list[Manifest]):
        self.graph, self.sources = graph, sources
        self.owners = graph.owners()
        self.holders: dict[str, list[Manifest]] = {}
        for manifest in origins:
            for digest in manifest.object_digests():
                self.holders.setdefault(digest, []).append(manifest)

    def what(self, digest: str) -> str:
        return f"object {digest[:12]} ({describe_owners(self.owners.get(digest, []))})"

    def where(self, digest: str) -> list[str]:
        """Where ``digest`` would be restored from, in the order they are tried."""
        found = []
        for manifest in self.holders.get(digest, []):
            for source in self.sources:
                place = source.describe(manifest)
                if place and place not in found:
                    found.append(place)
        return found

    def manifest_of(self, name: str) -> Manifest | None:
        digest = next((d for d, names in self.graph.registered.items() if name in names), None)
        return self.graph.manifests.get(digest) if digest else None


def _plan_finding(plan: RepairPlan, item: Finding, context: _Context) -> None:
    code, digest, models = item.code, item.digest, item.models
    if code in ("object-missing", "object-size", "object-corrupt"):
        if code != "object-missing":
            plan.quarantine[digest] = item
        if context.where(digest):
            plan.restore[digest] = models
        else:
            kinds = sorted({_origin_kind(m) for m in context.holders.get(digest, [])})
            plan.cannot.append(Text(f"{context.what(digest)} cannot be restored: no restore source handles "
                                    f"origin {', '.join(kinds) or 'none'}; ", _advice(context, models)))
    elif code == "object-writable":
        plan.seal.append(digest)
    elif code in ("manifest-corrupt", "lineage-corrupt"):
        plan.quarantine[digest] = item
    elif code == "lineage-missing":
        plan.lost[digest] = models
    if code in ("manifest-missing", "manifest-corrupt"):
        state = "is missing" if code == "manifest-missing" else "is corrupt (it goes to quarantine)"
        deletes = _joined([Text("`", _delete(name), "`") for name in models], "; ")
        plan.cannot.append(Text(f"manifest {digest[:12]} of {_names(models)} {state}, and a manifest has no "
                                "other copy: delete the model (", deletes, ") and import it again from its source"))
    elif code in ("manifest-invalid", "lineage-invalid"):
        plan.cannot.append(f"manifest {digest[:12]} ({_names(models)}) hashes right but does not decode: "
                           "it may come from a newer modelstore; upgrade modelstore, or delete the model")
    elif code.startswith("view-") and models and models[0] not in plan.views:
        if context.manifest_of(models[0]) is not None:
            plan.views.append(models[0])
    elif code == "orphan-directory" and item.path:
        plan.orphans.append(item.path.split("/", 1)[1])


def _origin_kind(manifest: Manifest) -> str:
    origin = manifest.origin
    kinds = {HubOrigin: "huggingface", LocalOrigin: "local", TrainingOrigin: "training"}
    return kinds.get(type(origin), "none")


def _advice(context: _Context, models: tuple[str, ...]) -> Hint:
    """How the user repairs ``models`` when modelstore cannot: import them again, or delete them."""
    hints: list[Hint] = []
    for name in models:
        manifest = context.manifest_of(name)
        origin = manifest.origin if manifest is not None else None
        overwrite = ("--name", name, "--on-conflict", "overwrite")
        if isinstance(origin, LocalOrigin):
            hints.append(Text(Next("import-model", str(origin.path), *overwrite)))
        elif isinstance(origin, HubOrigin):
            hints.append(Text(Next("import-model", origin.repo_id, "--revision", origin.commit, *overwrite)))
        elif isinstance(origin, TrainingOrigin):
            hints.append(Text(f"re-run the training that produced {name!r} (run {origin.run!r}), or `",
                              _delete(name), "`"))
        else:
            hints.append(Text(f"re-create {name!r} from its source, or `", _delete(name), "`"))
    return Text("to repair " + _names(models) + ": ", _joined(hints, "; ")) if hints else "no model needs it"


def _delete(name: str) -> Next:
    return Next("delete-model", name, "--yes")


def _joined(texts: list[Hint], sep: str) -> Text:
    joined = Text()
    for i, text in enumerate(texts):
        joined = Text(joined, sep, text) if i else Text(text)
    return joined


def _names(models) -> str:
    models = sorted(models)
    return ("model " if len(models) == 1 else "models ") + ", ".join(repr(m) for m in models)


def _steps(plan: RepairPlan, context: _Context) -> list[Step]:
    what, steps = context.what, []
    if plan.recovery is not None:
        basis = ("the views and registry.json.prev" if plan.recovery.used_previous
                 else "the views' metadata.json")
        steps.append(Step("recover-registry", f"recover models/registry.json from {basis} (the damaged file "
                          "is kept in .modelstore/quarantine/registry/)", True,
                          tuple(sorted(plan.recovery.brought_back)), path="models/registry.json"))
        steps += [Step("recover-registry", "  " + line, False) for line in plan.recovery.lines()]
    for name in plan.orphans:
        steps.append(Step("move-orphan", f"move models/{name} (not registered) to "
                          ".modelstore/quarantine/orphans/", True, path=f"models/{name}"))
    for digest, item in sorted(plan.quarantine.items()):
        steps.append(Step("quarantine-object", f"move corrupt {what(digest)} to "
                          ".modelstore/quarantine/objects/", True, item.models, digest, item.path))
    for digest, models in sorted(plan.restore.items()):
        sources_text = " or ".join(context.where(digest))
        steps.append(Step("restore-object", f"restore {what(digest)} from {sources_text}", False,
                          models, digest))
    for name in plan.views:
        steps.append(Step("rebuild-view", f"rebuild the view models/{name} from its manifest (anything that "
                          "does not belong in it goes to .modelstore/quarantine/view-files/)", True, (name,),
                          path=f"models/{name}"))
    for digest in plan.seal:
        steps.append(Step("seal-object", f"seal {what(digest)} read-only (0444)", False, digest=digest))
    for digest, models in sorted(plan.lost.items()):
        steps.append(Step("record-lost", f"record lineage manifest {digest[:12]} ({_names(models)}) as lost "
                          "in .modelstore/quarantine/lost/ (nothing can restore it; gc can run again)",
                          False, models, digest))
    return steps


@dataclass
class RepairOutcome:
    done: list[str] = field(default_factory=list)
    failed: list[Hint] = field(default_factory=list)  # with what the user can do
    warnings: list[Hint] = field(default_factory=list)  # why a source could not restore
