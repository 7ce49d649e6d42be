"""Lineage: the DAG of manifests linked by ``parents``.

A fine-tune's manifest points at the checkpoint or base model it was trained from. Names
come and go, but manifests are immutable and gc keeps every manifest of a registered
model's lineage, so the chain stays readable after a parent's name is deleted; such a
parent is shown as missing from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.workspace import Workspace, get_entry
from store.errors import Hint, ModelStoreError, text_of
from store.manifest import Manifest


@dataclass
class LineageNode:
    manifest: str  # digest
    names: list[str] = field(default_factory=list)  # registered names pointing at it
    model_id: str | None = None
    source: str | None = None
    created_at: str | None = None
    step: int | None = None  # training step, for checkpoints
    parents: list[str] = field(default_factory=list)
    problem: Hint | None = None  # set when the manifest cannot be read

    @property
    def registered(self) -> bool:
        return bool(self.names)


class _Manifests:
    """Reads each manifest once per query; remembers the ones that cannot be read."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.cache: dict[str, Manifest | ModelStoreError] = {}

    def get(self, digest: str) -> Manifest | ModelStoreError:
        if digest not in self.cache:
            try:
                self.cache[digest] = self.workspace.manifest(digest)
            except ModelStoreError as e:
                self.cache[digest] = e
        return self.cache[digest]

    def ancestors(self, digest: str) -> list[str]:
        """``digest`` and every manifest reachable through parents, nearest first (BFS)."""
        order, queue, seen = [], [digest], {digest}
        while queue:
            current = queue.pop(0)
            order.append(current)
            manifest = self.get(current)
            if isinstance(manifest, Manifest):
                for parent in manifest.parents:
                    if parent not in seen:
                        seen.add(parent)
                        queue.append(parent)
        return order


def _names_by_manifest(workspace: Workspace) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for name, entry in sorted(workspace.read_registry().models.items()):
        names.setdefault(entry.manifest, []).append(name)
    return names


def lineage(workspace: Workspace, name: str) -> list[LineageNode]:
    """The model first, then its ancestors, nearest first."""
    entry = get_entry(workspace, name)
    manifests = _Manifests(workspace)
    names = _names_by_manifest(workspace)
    nodes = []
    for digest in manifests.ancestors(entry.manifest):
        manifest = manifests.get(digest)
        node = LineageNode(manifest=digest, names=names.get(digest, []))
        if isinstance(manifest, Manifest):
            node.model_id = manifest.model_id
            node.source = manifest.source
            node.created_at = manifest.created_at
            node.step = manifest.training.step if manifest.training else None
            node.parents = list(manifest.parents)
        else:
            node.problem = text_of(manifest)
        nodes.append(node)
    return nodes


def children_of(workspace: Workspace, name: str) -> list[str]:
    """Registered models trained (directly or through checkpoints) from ``name``."""
    models = workspace.read_registry().models
    entry = models.get(name)
    if entry is None:
        return []
    manifests = _Manifests(workspace)
    children = []
    for other, other_entry in sorted(models.items()):
        if other == name or other_entry.manifest == entry.manifest:
            continue
        if other_entry.fine_tuned_from == name or entry.manifest in manifests.ancestors(other_entry.manifest)[1:]:
            children.append(other)
    return children
