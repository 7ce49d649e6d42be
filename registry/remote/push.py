"""push NAME: blobs the remote lacks -> manifests (the version and its ancestors) -> the ref.

The local write order, on the remote: a reader never sees a ref whose content is missing.
Blobs go up concurrently (a bounded pool, each large blob streamed in multipart parts, so
memory stays bounded) and each is hashed on the way. The ref is created with a conditional
write (If-None-Match: *) or moved with If-Match on the etag read before, so of two stores
pushing one name at once exactly one wins; the other gets ``PushConflictError`` naming the
winner's version. A push that dies half-way leaves only unreferenced objects; running it
again skips every object the remote already has.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from registry.remote.config import Remote
from registry.remote.errors import NotFastForwardError, PushConflictError, RemoteRefError
from registry.remote.gc import check_unlocked
from registry.remote.refs import Ref, decode_ref, encode_ref, who
from registry.report import NullReporter, Reporter, human_bytes
from registry.workspace import Workspace, get_entry
from store.errors import ModelStoreError
from store.manifest import Manifest, now_iso
from store.remote.errors import RefExistsError, RefMovedError
from store.remote.objects import largest_first

JOBS = 4  # objects in flight at once


@dataclass
class PushResult:
    name: str
    remote: str
    manifest: str
    objects_sent: int = 0
    bytes_sent: int = 0
    objects_present: int = 0
    manifests_sent: int = 0
    ref: str = "unchanged"  # "created" | "moved" | "unchanged"


def lineage_manifests(workspace: Workspace, digest: str) -> list[tuple[str, Manifest]]:
    """The version and every ancestor manifest, the version first (each read and verified)."""
    seen: dict[str, Manifest] = {}
    queue = [digest]
    while queue:
        current = queue.pop(0)
        if current in seen:
            continue
        seen[current] = workspace.manifest(current)
        queue.extend(seen[current].parents)
    return list(seen.items())


def push(workspace: Workspace, remote: Remote, name: str, *, all_versions: bool = False,
         force: bool = False, jobs: int = JOBS, reporter: Reporter | None = None) -> PushResult:
    reporter = reporter or NullReporter()
    entry = get_entry(workspace, name)
    lineage = lineage_manifests(workspace, entry.manifest)
    version = lineage[0][1]
    store = remote.store
    store.check_format(create=True)
    check_unlocked(remote)
    result = PushResult(name, remote.name, entry.manifest)

    sizes = dict(version.expected_sizes())
    if all_versions:  # the weights of every ancestor this store still holds whole
        for _, manifest in lineage[1:]:
            wanted = manifest.expected_sizes()
            if all(workspace.objects.size(d) == s for d, s in wanted.items()):
                sizes.update(wanted)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        items = sorted(sizes.items())
        present = list(pool.map(lambda item: store.holds(*item), items))
        missing = largest_first([item for item, there in zip(items, present) if not there])
        result.objects_present = len(items) - len(missing)
        if missing:
            reporter.status("push", f"{len(missing)} objects ({human_bytes(sum(s for _, s in missing))}) "
                            f"to send to {remote.name}; {result.objects_present} already there")
        for _ in pool.map(lambda item: store.upload(workspace.objects, *item), missing):
            pass
    result.objects_sent = len(missing)
    result.bytes_sent = sum(s for _, s in missing)

    # Manifests after the blobs, ancestors first, the version last.
    for digest, _ in reversed(lineage):
        size = workspace.objects.size(digest) or 0
        if not store.holds(digest, size):
            store.upload(workspace.objects, digest, size)
            result.manifests_sent += 1
            result.bytes_sent += size

    ref = Ref(manifest=entry.manifest, model_id=entry.model_id, architecture_type=entry.architecture_type,
              source=entry.source, created_at=entry.created_at, pushed_at=now_iso(), pushed_by=who(),
              fine_tuned_from=entry.fine_tuned_from)
    result.ref = _write_ref(remote, name, ref, {d for d, _ in lineage}, force)
    return result


def _write_ref(remote: Remote, name: str, ref: Ref, lineage: set[str], force: bool) -> str:
    store = remote.store
    current = store.read_ref(name)
    if current is None:
        try:
            store.create_ref(name, encode_ref(ref))
            return "created"
        except RefExistsError:
            return _lost(remote, name, ref)
    data, etag = current
    try:
        theirs = decode_ref(remote.name, name, data)
    except RemoteRefError:
        if not force:
            raise
        theirs = None
    if theirs is not None and theirs.manifest == ref.manifest:
        return "unchanged"
    if theirs is not None and not force and theirs.manifest not in lineage:
        raise NotFastForwardError(remote.name, name, theirs.manifest, ref.manifest)
    try:
        store.replace_ref(name, encode_ref(ref), etag or "")
    except RefMovedError:
        return _lost(remote, name, ref)
    return "moved"


def _lost(remote: Remote, name: str, ref: Ref) -> str:
    """The conditional write lost: the other writer's version, unless it pushed the same one."""
    current = remote.store.read_ref(name)
    if current is None:
        raise PushConflictError(remote.name, name, "(deleted)", None)
    try:
        winner = decode_ref(remote.name, name, current[0])
    except ModelStoreError:
        raise PushConflictError(remote.name, name, "(unreadable)", None) from None
    if winner.manifest == ref.manifest:
        return "unchanged"
    raise PushConflictError(remote.name, name, winner.manifest, winner.pushed_by)
