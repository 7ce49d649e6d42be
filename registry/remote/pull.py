"""pull NAME: the ref -> the manifests (version and lineage) -> only the blobs this store lacks
-> register the name (view, then registry entry, as every local write).

Nothing from the remote is trusted: the ref and each manifest are size-limited and decoded
strictly (the msgspec schema, digests, names and paths checked as for local input), and
each blob is hashed as it streams into ``.modelstore/tmp/`` and published only if it hashes
to its name with the size its manifest gives. A pull that dies half-way leaves temp files and
unreferenced blobs only; running it again downloads what is still missing.
"""

from __future__ import annotations

import difflib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from registry.names import name_problem, validate_name
from registry.ops import ConflictChoice, register
from registry.registry_file import RegistryEntry
from registry.remote.config import Remote
from registry.remote.errors import PullConflictError, RemoteModelNotFoundError, RemoteRefError
from registry.remote.refs import Ref, decode_ref
from registry.report import NullReporter, Reporter, human_bytes
from registry.views import file_path_problem, tensor_name_problem
from registry.workspace import Workspace
from store.digest import is_digest
from store.errors import ManifestError, ModelStoreError
from store.manifest import Manifest, decode_manifest
from store.remote.errors import RemoteCorruptError, RemoteError, RemoteObjectMissingError
from store.remote.objects import largest_first

JOBS = 4


@dataclass
class PullResult:
    name: str
    remote: str
    manifest: str
    objects_fetched: int = 0
    bytes_fetched: int = 0
    objects_present: int = 0
    manifests_fetched: int = 0
    entry: RegistryEntry | None = None


def check_manifest(digest: str, manifest: Manifest) -> None:
    """What the schema cannot say: every digest a digest, every path and name safe in a view."""
    for d in [*manifest.object_digests(), *manifest.parents]:
        if not is_digest(d):
            raise ManifestError(digest, f"{d[:80]!r} is not a BLAKE3 digest")
    for relpath in manifest.files:
        problem = file_path_problem(relpath)
        if problem:
            raise ManifestError(digest, f"file {relpath[:200]!r}: {problem}")
    for name in manifest.tensors:
        problem = tensor_name_problem(name)
        if problem:
            raise ManifestError(digest, f"tensor {name[:200]!r}: {problem}")
    if any(size < 0 for size in manifest.expected_sizes().values()):
        raise ManifestError(digest, "a negative size")


def read_ref(remote: Remote, name: str) -> Ref:
    validate_name(name)
    store = remote.store
    if not store.check_format():
        raise RemoteModelNotFoundError(remote.name, name, [])
    got = store.read_ref(name)
    if got is None:
        known = difflib.get_close_matches(name, store.ref_names(), n=2)
        raise RemoteModelNotFoundError(remote.name, name, known)
    return decode_ref(remote.name, name, got[0])


def fetch_manifests(workspace: Workspace, remote: Remote, name: str,
                    digest: str) -> list[tuple[str, Manifest, bytes | None]]:
    """The version and its lineage, version first: (digest, manifest, bytes fetched or None when
    this store already had it). Any of them missing or bad on the remote is a ``RemoteRefError``."""
    found: dict[str, tuple[Manifest, bytes | None]] = {}
    queue = [digest]
    while queue:
        current = queue.pop(0)
        if current in found:
            continue
        try:
            if workspace.objects.exists(current):
                try:
                    found[current] = (workspace.manifest(current), None)
                except ModelStoreError:
                    pass  # damaged here: take the remote's copy
            if current not in found:
                data = remote.store.get_verified(current)
                manifest = decode_manifest(current, data)
                check_manifest(current, manifest)
                found[current] = (manifest, data)
        except (RemoteError, ManifestError) as e:
            what = "its manifest" if current == digest else f"its lineage manifest {current[:12]}"
            raise RemoteRefError(remote.name, name, f"{what} is unusable: {e.message}") from None
        queue.extend(found[current][0].parents)
    return [(d, m, data) for d, (m, data) in found.items()]


def pull(workspace: Workspace, remote: Remote, name: str, *, on_conflict: ConflictChoice = "cancel",
         jobs: int = JOBS, reporter: Reporter | None = None) -> PullResult:
    reporter = reporter or NullReporter()
    ref = read_ref(remote, name)
    lineage = fetch_manifests(workspace, remote, name, ref.manifest)
    version = lineage[0][1]
    lineage_digests = {d for d, _, _ in lineage}
    policy: ConflictChoice = on_conflict
    existing = workspace.read_registry().models.get(name)
    if existing is not None and existing.manifest != ref.manifest:
        if existing.manifest in lineage_digests:
            policy = "overwrite"  # a fast-forward: the remote's version descends from ours
        elif on_conflict == "cancel":
            raise PullConflictError(remote.name, name, existing.manifest, ref.manifest)
    workspace.ensure_store()
    result = PullResult(name, remote.name, ref.manifest)
    sizes = sorted(version.expected_sizes().items())
    missing = largest_first([(d, s) for d, s in sizes if not workspace.objects.holds(d, s)])
    result.objects_present = len(sizes) - len(missing)
    if missing:
        reporter.status("pull", f"{len(missing)} objects ({human_bytes(sum(s for _, s in missing))}) to fetch "
                        f"from {remote.name}; {result.objects_present} already here")
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for _ in pool.map(lambda item: remote.store.download(workspace.objects, *item), missing):
                pass
    except (RemoteCorruptError, RemoteObjectMissingError) as e:
        raise RemoteRefError(remote.name, name, f"an object it needs is unusable: {e.message}") from None
    result.objects_fetched = len(missing)
    result.bytes_fetched = sum(s for _, s in missing)
    for digest, _, data in reversed(lineage):  # manifests after the blobs, ancestors first
        if data is not None and workspace.objects.put_bytes(data).digest == digest:
            result.manifests_fetched += 1
    parent = ref.fine_tuned_from if ref.fine_tuned_from and not name_problem(ref.fine_tuned_from) else None
    result.entry = register(workspace, name, ref.manifest, version, fine_tuned_from=parent,
                            on_conflict=policy)
    return result
