"""Restoring lost blobs from a model's Hub origin (``validate-registry --fix``): the files that
held them are fetched again at the pinned commit, verified, and stored again."""

from __future__ import annotations

from registry.hub.download import DEFAULT_ENDPOINT, HubRepo, RemoteFile, Token, configured_endpoint
from registry.report import NullReporter, Reporter
from registry.workspace import Workspace
from store.errors import ModelStoreError, text_of, words
from store.manifest import HubOrigin, Manifest, OriginFile


def restore_from_hub(workspace: Workspace, manifest: Manifest, digests: set[str],
                     reporter: Reporter | None = None, *, token: str | None = None) -> set[str]:
    """Fetch again, at the pinned commit, the files of ``manifest`` holding ``digests``.

    Each file is verified against the sha256 (or git blob id) its HubOrigin recorded and
    split again; the objects it yields are written if missing. Returns the digests of
    ``digests`` now in the store and re-hashing to their names. Corrupt objects must have
    been moved aside first: a present object of the right size is not overwritten.
    A file that cannot be fetched is reported as a warning and its digests are not returned.
    """
    reporter = reporter or NullReporter()
    origin = manifest.origin
    if not isinstance(origin, HubOrigin) or not digests:
        return set()
    # The commit and the hashes pin the bytes, so any endpoint serving the commit will do: a
    # model imported from huggingface.co is restored through HF_ENDPOINT when that names a mirror.
    endpoint = configured_endpoint() if origin.endpoint == DEFAULT_ENDPOINT else origin.endpoint
    hub = HubRepo(origin.repo_id, endpoint=endpoint, token=Token.find(token))
    workspace.ensure_store()
    restored: set[str] = set()
    for relpath, upstream in sorted(origin.files.items()):
        wanted = _digests_of(manifest, relpath, upstream) & digests
        if not wanted:
            continue
        f = RemoteFile.from_origin(relpath, upstream)
        try:
            bar = reporter.progress_bar()
            with hub.fetch_file(origin.commit, f, workspace.layout.tmp, bar=bar) as (path, _):
                produced = _split_again(workspace, manifest, relpath, path)
        except ModelStoreError as e:
            reporter.warning(words(f"could not restore {relpath} from {origin.repo_id}@{origin.commit[:12]}: ",
                                  text_of(e)))
            continue
        # A present object is kept as it is (put_* skips it): count it only if it hashes right.
        done = {d for d in wanted & produced if workspace.objects.rehash(d) == d}
        restored |= done
        reporter.status("restore", f"{relpath}: {len(done)} of {len(wanted)} object(s) restored from "
                                   f"{origin.repo_id}@{origin.commit[:12]}")
    return restored


def _digests_of(manifest: Manifest, relpath: str, upstream: OriginFile) -> set[str]:
    if upstream.tensors:
        return {manifest.tensors[t].digest for t in upstream.tensors if t in manifest.tensors}
    return {manifest.files[relpath].digest} if relpath in manifest.files else set()


def _split_again(workspace: Workspace, manifest: Manifest, relpath: str, path) -> set[str]:
    """The manifest's digests that storing this file yields (and leaves in the store)."""
    if relpath in manifest.files:
        put = workspace.objects.put_file(path)
        return {put.digest} if put.digest == manifest.files[relpath].digest else set()
    wanted = {name: t.digest for name, t in manifest.tensors.items()}
    return {item.put.digest for item in workspace.objects.put_tensors(path, wanted)
            if item.put.digest == wanted[item.spec.name]}
