"""Restoring objects from where a model's bytes came from: its manifest's ``origin``.

A ``RestoreSource`` handles one kind of origin. ``RESTORE_SOURCES`` lists the ones
``validate-registry --fix`` tries, in order, for every manifest that references a missing
object. Each restores what it can and returns the digests it wrote; every object goes in
through ``ObjectStore``, which re-hashes what it wrote, so a restored object is always
the bytes its name says, whatever the source did.

- ``local``: the folder the model was imported from, if its bytes still hash right. Weight
  files are re-split at the byte level (only the tensors asked for); every candidate is
  hashed *before* it is written, so a changed source writes nothing.
- ``huggingface``: the Hub at the commit the manifest pinned, through hub import's
  verified download path (each file checked against the sha256 or git blob id recorded at
  import, then split again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from registry.report import Reporter
from registry.workspace import Workspace
from store.digest import digest_bytes, digest_file
from store.errors import ModelStoreError, text_of, words
from store.manifest import HubOrigin, LocalOrigin, Manifest, TensorEntry

# (workspace, manifest, digests wanted, reporter for why something was not restored) -> restored
RestoreFn = Callable[[Workspace, Manifest, set[str], Reporter], set[str]]


@dataclass(frozen=True)
class RestoreSource:
    kind: str  # the origin kind it handles: "local", "huggingface", ...
    describe: Callable[[Manifest], str | None]  # where it would restore from; None: not this origin
    restore: RestoreFn


def describe_local(manifest: Manifest) -> str | None:
    origin = manifest.origin
    return f"local folder {origin.path}" if isinstance(origin, LocalOrigin) else None


def restore_from_local(workspace: Workspace, manifest: Manifest, digests: set[str],
                       reporter: Reporter) -> set[str]:
    origin = manifest.origin
    if not isinstance(origin, LocalOrigin):
        return set()
    folder = Path(origin.path)
    if not folder.is_dir():
        reporter.warning(f"the local source folder {folder} no longer exists")
        return set()
    restored: set[str] = set()
    for relpath, entry in sorted(manifest.files.items()):
        if entry.digest in digests and entry.digest not in restored:
            if _restore_file(workspace, folder / relpath, entry.digest, reporter):
                restored.add(entry.digest)
    for relpath, origin_file in sorted(origin.files.items()):
        restored |= _restore_kept(workspace, folder / relpath, origin_file, digests - restored, reporter)
    wanted = {name: t for name, t in manifest.tensors.items() if t.digest in digests}
    for relpath, origin_file in sorted(origin.files.items()):
        names = {n: wanted[n] for n in origin_file.tensors
                 if n in wanted and wanted[n].digest not in restored}
        if names:
            restored |= _restore_tensors(workspace, folder / relpath, names, reporter)
    return restored


def _restore_file(workspace: Workspace, path: Path, digest: str, reporter: Reporter) -> bool:
    try:
        actual = digest_file(path)
        if actual != digest:
            reporter.warning(f"{path} changed since it was imported (its bytes hash to {actual[:12]}, "
                             f"not {digest[:12]})")
            return False
        return workspace.objects.put_file(path).digest == digest
    except (ModelStoreError, OSError) as e:
        reporter.warning(words(f"cannot restore from {path}: ", text_of(e)))
        return False


def _restore_kept(workspace: Workspace, path: Path, origin_file, digests: set[str], reporter: Reporter) -> set[str]:
    """A weight file's kept header, or a kept index, from the source file (hashed first)."""
    from registry.ingest.folder import read_head

    restored = set()
    for entry, read in ((origin_file.header, read_head), (origin_file.content, Path.read_bytes)):
        if entry is None or entry.digest not in digests:
            continue
        try:
            data = read(path)
        except (ModelStoreError, OSError) as e:
            reporter.warning(f"cannot restore from {path}: {e}")
            continue
        if digest_bytes(data) != entry.digest:
            reporter.warning(f"{path} changed since it was imported")
        elif workspace.objects.put_bytes(data).digest == entry.digest:
            restored.add(entry.digest)
    return restored


def _restore_tensors(workspace: Workspace, path: Path, names: dict[str, TensorEntry],
                     reporter: Reporter) -> set[str]:
    """Write the canonical blobs of ``names`` from the safetensors file ``path`` (the store's
    one re-split, ``put_tensors``: each tensor hashed before it is written, and written only
    if it is still the bytes the manifest names)."""
    wanted = {name: entry.digest for name, entry in names.items()}
    try:
        stored = workspace.objects.put_tensors(path, wanted)
    except (ModelStoreError, OSError) as e:
        reporter.warning(f"cannot restore from {path}: {e}")
        return set()
    found = {item.spec.name: item.put.digest for item in stored}
    for name in sorted(names):
        if name not in found:
            reporter.warning(f"{path} no longer holds tensor {name!r}")
        elif found[name] != wanted[name]:
            reporter.warning(f"{path}: tensor {name!r} changed since it was imported")
    return {digest for name, digest in found.items() if digest == wanted[name]}


def describe_hub(manifest: Manifest) -> str | None:
    origin = manifest.origin
    if not isinstance(origin, HubOrigin):
        return None
    return f"the Hub: {origin.repo_id} at commit {origin.commit[:12]}"


def restore_from_hub(workspace: Workspace, manifest: Manifest, digests: set[str],
                     reporter: Reporter) -> set[str]:
    """``registry.hub.restore.restore_from_hub``, imported only when a Hub model needs restoring
    (the Hub client is not loaded otherwise)."""
    from registry.hub import restore

    return restore.restore_from_hub(workspace, manifest, digests, reporter)


LOCAL_SOURCE = RestoreSource("local", describe_local, restore_from_local)
HUB_SOURCE = RestoreSource("huggingface", describe_hub, restore_from_hub)
RESTORE_SOURCES: list[RestoreSource] = [LOCAL_SOURCE, HUB_SOURCE]


def restore_objects(workspace: Workspace, wanted: set[str], manifests: list[Manifest],
                    sources: list[RestoreSource], reporter: Reporter) -> dict[str, str]:
    """Restore ``wanted`` from the origins of ``manifests`` (tried in order): digest -> source."""
    done: dict[str, str] = {}
    for manifest in manifests:
        needed = (wanted - set(done)) & manifest.object_digests()
        for source in sources:
            where = source.describe(manifest)
            if not needed or where is None:
                continue
            for digest in source.restore(workspace, manifest, set(needed), reporter) & needed:
                done[digest] = where
            needed -= set(done)
    return done
