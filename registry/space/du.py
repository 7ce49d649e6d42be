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
from store.quarantine import list_quarantine


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
    quarantine_items: int = 0  # set aside by --fix (.modelstore/quarantine/), emptied by gc
    quarantine_bytes: int = 0

    @property
    def dedup_ratio(self) -> float:
        """Logical bytes per byte stored (1.0: no sharing)."""
        return self.logical_bytes / self.referenced_bytes if self.referenced_bytes else 1.0


def model_usages(workspace: Workspace) -> tuple[dict[str, ModelUsage], dict[str, dict[str, int]]]:
    """Each registered model's usage, and the objects (digest -> size) it references: its
    files, tensors, training state and its manifest. ``du`` and ``model-info`` both count
    "alone" this way: the objects no other registered model references."""
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
    usages = {}
    for name, sizes in sizes_by_model.items():
        exclusive = sum(size for digest, size in sizes.items() if users[digest] == 1)
        logical = sum(sizes.values())
        usages[name] = ModelUsage(name, logical, exclusive, logical - exclusive, problems.get(name))
    return usages, sizes_by_model


def disk_usage(workspace: Workspace) -> StoreUsage:
    usage = StoreUsage()
    usages, sizes_by_model = model_usages(workspace)
    for model in usages.values():
        usage.models.append(model)
        usage.logical_bytes += model.logical_bytes

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
    quarantined = list_quarantine(workspace.layout)
    usage.quarantine_items = len(quarantined)
    usage.quarantine_bytes = sum(q.size for q in quarantined)
    return usage
