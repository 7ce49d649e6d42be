"""``model-info``: everything known about one registered model, gathered in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.ops import get_model
from registry.checkpoints import Checkpoint, is_ref, run_checkpoints
from registry.lineage import LineageNode, children_of, lineage
from registry.registry_file import RegistryEntry
from registry.space.du import model_usages
from registry.views import model_file_size
from registry.workspace import Workspace
from store.manifest import HubOrigin, LocalOrigin, Manifest, TrainingOrigin


@dataclass
class ModelInfo:
    entry: RegistryEntry
    manifest: Manifest
    file_size: int  # bytes of every file and tensor blob of this version
    exclusive_bytes: int  # of those, bytes no other registered model references
    shared_bytes: int
    dtypes: list[str]
    origin: str
    lineage: list[LineageNode] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)  # of the training run that produced it
    parent_missing: bool = False  # fine_tuned_from names a model that is not registered any more


def describe_origin(manifest: Manifest) -> str:
    origin = manifest.origin
    if isinstance(origin, HubOrigin):
        return f"{origin.endpoint}/{origin.repo_id} at {origin.commit} (asked: {origin.revision})"
    if isinstance(origin, LocalOrigin):
        return f"local folder {origin.path}"
    if isinstance(origin, TrainingOrigin):
        return f"training run {origin.run}"
    return ""


def model_info(workspace: Workspace, name: str) -> ModelInfo:
    entry, manifest = get_model(workspace, name)
    registered = workspace.read_registry().models
    # As du counts them (its manifest included), so the two commands agree.
    usage = model_usages(workspace)[0].get(name)
    return ModelInfo(
        entry=entry,
        manifest=manifest,
        file_size=model_file_size(manifest),
        exclusive_bytes=usage.exclusive_bytes if usage else 0,
        shared_bytes=usage.shared_bytes if usage else 0,
        dtypes=sorted({t.dtype for t in manifest.tensors.values()}),
        origin=describe_origin(manifest),
        lineage=lineage(workspace, name),
        children=children_of(workspace, name),
        checkpoints=run_checkpoints(workspace, entry.manifest, manifest),
        parent_missing=bool(entry.fine_tuned_from) and not is_ref(entry.fine_tuned_from)
        and entry.fine_tuned_from not in registered,
    )
