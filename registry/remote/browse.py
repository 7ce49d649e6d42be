"""What a remote holds: ``list-models --remote`` (its refs) and ``model-info NAME --remote``."""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.remote.config import Remote
from registry.remote.pull import fetch_manifests, read_ref
from registry.remote.refs import Ref, decode_ref
from registry.workspace import Workspace
from store.errors import ModelStoreError


@dataclass
class RemoteModel:
    name: str
    ref: Ref | None
    problem: str | None = None  # the ref is unreadable


def list_remote(remote: Remote) -> list[RemoteModel]:
    """Every ref of the remote, most recently pushed first; unreadable refs listed with why."""
    store = remote.store
    if not store.check_format():
        return []
    models = []
    for name in store.ref_names():
        got = store.read_ref(name)
        if got is None:
            continue
        try:
            models.append(RemoteModel(name, decode_ref(remote.name, name, got[0])))
        except ModelStoreError as e:
            models.append(RemoteModel(name, None, str(e)))
    return sorted(models, key=lambda m: (m.ref.pushed_at if m.ref else "", m.name), reverse=True)


@dataclass
class RemoteModelInfo:
    remote: str
    url: str
    name: str
    ref: Ref
    manifest: str
    model_id: str
    architecture_type: str
    source: str
    license: str | None
    params: int
    files: int
    tensors: int
    total_bytes: int
    missing_here: int  # objects this store lacks
    missing_bytes: int  # what a pull would download
    parents: list[str] = field(default_factory=list)


def remote_model_info(workspace: Workspace, remote: Remote, name: str) -> RemoteModelInfo:
    ref = read_ref(remote, name)
    lineage = fetch_manifests(workspace, remote, name, ref.manifest)
    manifest = lineage[0][1]
    sizes = manifest.expected_sizes()
    missing = {d: s for d, s in sizes.items() if workspace.objects.size(d) != s}
    return RemoteModelInfo(
        remote=remote.name, url=remote.config.url, name=name, ref=ref, manifest=ref.manifest,
        model_id=manifest.model_id, architecture_type=manifest.architecture_type, source=manifest.source,
        license=manifest.license, params=manifest.params, files=len(manifest.files),
        tensors=len(manifest.tensors), total_bytes=sum(sizes.values()), missing_here=len(missing),
        missing_bytes=sum(missing.values()), parents=list(manifest.parents))
