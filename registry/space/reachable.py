"""What the registry reaches: the one definition gc keeps and validation checks against.

Reachable are: each registered model's manifest and every object it references (files,
tensors, optimizer state), and the manifests of its lineage (parents, recursively). A
parent's *weights* are not kept alive by a child; its manifest is, so lineage stays
readable after the parent's name is deleted and gc has run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.registry_file import RegistryDoc
from registry.workspace import Workspace
from store.errors import CorruptObjectError, ModelStoreError
from store.manifest import Manifest


@dataclass
class Reachable:
    manifests: dict[str, Manifest] = field(default_factory=dict)  # readable, registered or lineage
    unreadable: dict[str, ModelStoreError] = field(default_factory=dict)  # digest -> why
    registered: dict[str, list[str]] = field(default_factory=dict)  # manifest -> names pointing at it
    needed_by: dict[str, set[str]] = field(default_factory=dict)  # manifest -> names whose lineage has it

    def is_registered(self, digest: str) -> bool:
        return digest in self.registered

    def keep(self) -> set[str]:
        """Every object gc must keep."""
        digests = set(self.manifests) | set(self.unreadable)
        for digest in self.registered:
            manifest = self.manifests.get(digest)
            if manifest is not None:
                digests |= manifest.object_digests()
        return digests

    def owners(self) -> dict[str, list[tuple[str, str]]]:
        """object digest -> (model name, path in its view) for every registered model's object."""
        from registry.views import tensor_relpath

        owners: dict[str, list[tuple[str, str]]] = {}
        for digest, names in sorted(self.registered.items()):
            manifest = self.manifests.get(digest)
            if manifest is None:
                continue
            items = [(f.digest, path) for path, f in manifest.files.items()]
            items += [(t.digest, tensor_relpath(n)) for n, t in manifest.tensors.items()]
            if manifest.training is not None:
                items += [(f.digest, f"(optimizer state {key})")
                          for key, f in manifest.training.optimizer.items()]
            for name in names:
                for object_digest, item in items:
                    owners.setdefault(object_digest, []).append((name, item))
        return owners


def reachable(workspace: Workspace, doc: RegistryDoc) -> Reachable:
    """Load every registered manifest and its lineage once; never raises for a bad manifest."""
    found = Reachable()
    queue: list[tuple[str, str]] = []
    for name, entry in sorted(doc.models.items()):
        found.registered.setdefault(entry.manifest, []).append(name)
        queue.append((entry.manifest, name))
    while queue:
        digest, name = queue.pop()
        needed = found.needed_by.setdefault(digest, set())
        if name in needed:
            continue
        needed.add(name)
        if digest not in found.manifests and digest not in found.unreadable:
            try:
                found.manifests[digest] = workspace.manifest(digest)
            except ModelStoreError as e:
                found.unreadable[digest] = e
            except OSError as e:  # a folder or an unreadable file where the object should be
                path = workspace.objects.path(digest)
                found.unreadable[digest] = CorruptObjectError(digest, path, None, f"it cannot be read "
                                                              f"({e.strerror or e})")
        manifest = found.manifests.get(digest)
        if manifest is not None:
            queue.extend((parent, name) for parent in manifest.parents)
    return found
