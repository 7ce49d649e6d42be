"""``du``: what each model costs on disk, and how much the store saves by sharing.

Per registered model: its logical size (every object its version references, counted as if
nothing were shared), the bytes it alone holds (objects no other registered model
references: what deleting it and running gc would free), and the bytes it shares. For the
store: the sum of logical sizes, the bytes actually on disk, and their ratio (the dedup
ratio). Objects no registered model references (old checkpoints' weights, deleted models)
are counted apart: they are what ``gc`` frees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from registry.workspace import Workspace
from store.errors import Hint, ModelStoreError, text_of


@dataclass
class ModelUsage:
    name: str
    logical_bytes: int  # every object of its version, as if nothing were shared
    exclusive_bytes: int  # referenced by no other registered model
    shared_bytes: int
    problem: Hint | None = None  # its manifest could not be read


@dataclass
class StoreUsage:
    models: list[ModelUsage] = field(default_factory=list)
    logical_bytes: int = 0  # sum of the models' logical sizes
    referenced_bytes: int = 0  # unique objects the registered models reference
    unreferenced_bytes: int = 0  # everything else under objects/ (gc's candidates)
    unreferenced_objects: int = 0
    objects: int = 0
    stored_bytes: int = 0  # every object on disk

    @property
    def dedup_ratio(self) -> float:
        """Logical bytes per byte stored (1.0: no sharing)."""
        return self.logical_bytes / self.referenced_bytes if self.referenced_bytes else 1.0


def disk_usage(workspace: Workspace) -> StoreUsage:
    usage = StoreUsage()
    sizes_by_model: dict[str, dict[str, int]] = {}
    problems: dict[str, Hint] = {}
    for name, entry in sorted(workspace.read_registry().models.items()):
        try:
            manifest = workspace.manifest(entry.manifest)
        except ModelStoreError as e:
            problems[name] = text_of(e)
            sizes_by_model[name] = {}
            continue
        sizes = manifest.expected_sizes()
        sizes[entry.manifest] = workspace.objects.size(entry.manifest) or 0
        sizes_by_model[name] = sizes

    users: dict[str, int] = {}
    for sizes in sizes_by_model.values():
        for digest in sizes:
            users[digest] = users.get(digest, 0) + 1
    for name, sizes in sizes_by_model.items():
        exclusive = sum(size for digest, size in sizes.items() if users[digest] == 1)
        logical = sum(sizes.values())
        usage.models.append(ModelUsage(name, logical, exclusive, logical - exclusive, problems.get(name)))
        usage.logical_bytes += logical

    referenced: dict[str, int] = {}
    for sizes in sizes_by_model.values():
        referenced.update(sizes)
    usage.referenced_bytes = sum(referenced.values())
    for digest, path in workspace.layout.iter_object_paths():
        size = os.lstat(path).st_size
        usage.objects += 1
        usage.stored_bytes += size
        if digest not in referenced:
            usage.unreferenced_objects += 1
            usage.unreferenced_bytes += size
    usage.models.sort(key=lambda m: (-m.logical_bytes, m.name))
    return usage
