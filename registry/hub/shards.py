"""Hub weight files the store already holds, found by their sha256: reused, not downloaded.

A registered model imported from the Hub records, per weight file, the upstream sha256 and
the tensors it yielded (``HubOrigin.files``). Another import that lists a file with the
same sha256 (the same shard in a fine-tune's repo, a re-import of the same commit under a
second name) takes those tensors from the store instead of fetching the file again, as
long as every blob is present with its size; the import's verify step re-hashes them.
"""

from __future__ import annotations

from typing import NamedTuple

from registry.hub.download import RemoteFile
from registry.hub.stream import check_index
from registry.ingest.folder import ManifestParts
from registry.workspace import Workspace
from store.errors import ModelStoreError, SafetensorsError
from store.manifest import FileEntry, HubOrigin, TensorEntry


class StoredShard(NamedTuple):
    tensors: dict[str, TensorEntry]  # tensor name -> its entry, as the donor manifest has it
    header: FileEntry | None  # the kept header of the upstream file (byte-exact export)


def stored_shards(workspace: Workspace) -> dict[str, StoredShard]:
    """Upstream sha256 -> the shard, for every Hub weight file a registered model was made
    from whose every blob is present with its size."""
    shards: dict[str, StoredShard] = {}
    for entry in workspace.read_registry().models.values():
        try:
            manifest = workspace.manifest(entry.manifest)
        except ModelStoreError:
            continue  # validate-registry reports it; it just cannot donate blobs
        if not isinstance(manifest.origin, HubOrigin):
            continue
        for origin in manifest.origin.files.values():
            if origin.sha256 and origin.tensors and all(t in manifest.tensors for t in origin.tensors):
                shards.setdefault(origin.sha256, StoredShard({t: manifest.tensors[t] for t in origin.tensors},
                                                             origin.header))
    objects = workspace.objects
    return {sha256: shard for sha256, shard in shards.items()
            if all(objects.size(t.digest) == t.blob_size(n) for n, t in shard.tensors.items())
            and (shard.header is None or objects.size(shard.header.digest) == shard.header.size)}


def reuse_shard(parts: ManifestParts, shard: StoredShard, f: RemoteFile, seen: dict[str, str],
                weight_map: dict[str, str] | None, where: str) -> None:
    """Record ``f`` from the store's blobs, checked as a downloaded file's header would be:
    a tensor also in another file, and the checkpoint index."""
    for name in shard.tensors:
        if name in seen:
            raise SafetensorsError(f"{where}/{f.path}", f"tensor {name!r} is also in {seen[name]}")
        seen[name] = f.path
    check_index(weight_map, f.path, list(shard.tensors), where)
    origin = f.origin()
    origin.tensors = list(shard.tensors)
    origin.header = shard.header
    parts.tensors.update(shard.tensors)
    parts.origin_files[f.path] = origin
    for name, t in shard.tensors.items():
        parts.stats.count(t.blob_size(name), written=False)
