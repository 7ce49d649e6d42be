"""``import-model`` from the Hugging Face Hub (restoring lost blobs from it: ``registry.hub.restore``).

Import, step by step (nothing is written to the store before step 5):

1. parse SOURCE (``registry.hub.source``) and resolve the revision to a commit; every later
   request is pinned to that commit, which the manifest records;
2. choose the files by the same rule as local folders (``registry.ingest.model_files``): only
   safetensors weights, never pickle weights or remote code, which are never requested;
3. fetch config.json first: an unsupported architecture stops here, before any weight byte;
4. settle the name (conflicts), the license (acknowledged, or a refusal naming ``--yes``)
   and the disk space (the listing's sizes);
5. weight files one at a time, each split into tensor blobs while it downloads
   (``registry.hub.stream``): its header is checked as soon as it arrives, each tensor's
   bytes go to a temp blob in ``.modelstore/tmp/``, and the blobs are published only once
   the whole file matched the Hub's sha256. A copy in the local HF cache that hashes right
   is split from there instead; a shard some registered model already holds (same
   sha256: ``registry.hub.shards``) is not downloaded again. Then the other files;
6. verify: blobs that were already stored are re-hashed (new ones are verified as they are
   written), and the model loads and gives finite logits (``registry.check.loadcheck``). The last
   weight file's blobs, verified, are published while the model loads from hard links to
   them, so the fsyncs and renames do not wait for the check, nor it for them;
7. write the manifest and register the name: the commit point.

A failure anywhere before 7 leaves no registry entry and no temp file; blobs of shards
already verified stay as orphans, and the next run reuses them instead of writing them again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from adapters import check_supported
from registry.ops import ConflictPolicy, register
from registry.hub.download import (
    HubRepo,
    RemoteFile,
    RepoSnapshot,
    Token,
)
from registry.hub.license import (
    LicenseInfo,
    acknowledge,
    license_file,
    license_from_card,
    license_from_file,
)
from registry.hub.source import parse_hub_source
from registry.hub.stream import check_index, stream_weight_file
from registry.ingest.folder import (
    ImportResult,
    ManifestParts,
    check_free_space,
    check_weight_file,
    decide_conflict,
    ingest_file,
    ingest_weight_file,
    keep_bytes,
    record_weight_file,
    registered_from,
    report_selection,
    warn_no_tokenizer,
)
from registry.ingest.model_files import (
    CONFIG_FILE,
    FileSelection,
    apply_index,
    index_shards,
    read_config,
    select_files,
)
from registry.names import derive_name, validate_name
from registry.report import NullReporter, Reporter, human_bytes
from registry.check.loadcheck import LoadCheck, check_loads, start_worker
from registry.workspace import Workspace
from registry.hub import mirror
from registry.hub.errors import HubGatedRepoError, HubInterruptedError
from registry.hub.partial import kept_partials
from registry.hub.shards import StoredShard, reuse_shard, stored_shards
from registry.hub.settings import SharedProgress, TransferSettings
from store.errors import CorruptObjectError, ModelStoreError
from store.manifest import FileEntry, HubOrigin, Manifest
from store.tensors.tensorstream import TensorStream

# Weight files downloaded at once, as snapshot_download's default of files at once (the
# connections they use are bounded by TransferSettings.connections, for all of them together).
FILE_WORKERS = 8
# Non-weight files up to this size are fetched into memory; bigger ones go through a temp file.
IN_MEMORY_LIMIT = 64 << 20


@dataclass
class HubImportResult(ImportResult):
    repo_id: str = ""
    revision: str = ""
    commit: str = ""
    license: LicenseInfo | None = None
    load_check: LoadCheck | None = None
    downloaded_bytes: int = 0  # fetched over the network
    from_cache: list[str] = field(default_factory=list)  # read from the local HF cache
    from_store: list[str] = field(default_factory=list)  # weight files whose blobs were all stored


def import_from_hub(
    workspace: Workspace,
    source: str,
    *,
    name: str | None = None,
    revision: str | None = None,
    token: str | None = None,
    assume_yes: bool = False,
    on_conflict: ConflictPolicy = "cancel",
    reporter: Reporter | None = None,
    confirm_license: Callable[[LicenseInfo], bool] | None = None,
    ask_token: Callable[[str, str], str | None] | None = None,
    trust_size_only: bool = False,
    connections: int | None = None,
) -> HubImportResult:
    """Import a Hub model repo (id, URL or ``hf://``) at ``revision`` under ``name``.

    ``token``: ``--token``; None falls back to ``HF_TOKEN``, then the saved login.
    ``assume_yes`` acknowledges the license; otherwise ``confirm_license(info)`` is asked
    (None: refuse). ``ask_token(repo_id, page_url)`` is asked for a token when the repo
    is gated and none was found (None: refuse). ``on_conflict`` as for local imports.
    ``trust_size_only``: import files for which the endpoint gives no hash, checking their
    sizes only (their origin records no hash). ``connections``: how many at once for the
    whole import (``--connections``; default ``MODELSTORE_HUB_CONNECTIONS``, else 8).
    """
    reporter = reporter or NullReporter()
    src = parse_hub_source(source, revision)
    name = validate_name(name) if name is not None else derive_name(src.repo_id)
    hub = HubRepo(src.repo_id, endpoint=src.endpoint, token=Token.find(token),
                  settings=TransferSettings.configured(connections))
    snap = hub.snapshot(src.revision)
    reporter.status("hub", f"{snap.repo_id} {snap.revision} is commit {snap.commit} on {hub.endpoint}")
    job = _HubImport(workspace, hub, snap, reporter)

    # Everything up to ensure_store only reads (and fetches no weight byte).
    sel = select_files(list(snap.files), job.where)
    # A mirror may list names only: sizes and hashes then come from a HEAD of each file.
    mirror.complete(hub, snap, [*sel.files, *sel.weights, *filter(None, [sel.index])],
                    trust_size_only=trust_size_only)
    config = read_config(job.fetch_config(ask_token), job.where)
    model_type = check_supported(config.get("model_type"), f" in {job.where}/{CONFIG_FILE}")
    same_source = lambda m: isinstance(m.origin, HubOrigin) and (  # noqa: E731
        m.origin.endpoint, m.origin.repo_id, m.origin.commit) == (hub.endpoint, snap.repo_id, snap.commit)
    before = registered_from(workspace, name, same_source)
    on_conflict = decide_conflict(workspace, name, on_conflict, same_source)
    license_info = job.find_license(sel)
    if before is not None and not assume_yes and confirm_license is not None:
        how = "acknowledged when this commit was imported under this name"  # a re-run asks nothing
    else:
        how = acknowledge(license_info, assume_yes=assume_yes, confirm=confirm_license)
    reporter.status("license", f"{license_info.describe()}; {how}")
    weight_map = None
    if sel.index:
        index = job.fetch_small(sel.index)
        # A shard the index names but the listing left out: a mirror's listing can miss one.
        sel.weights = sorted([*sel.weights, *mirror.find_unlisted(
            hub, snap, set(index_shards(index)) - set(sel.weights), trust_size_only=trust_size_only)])
        weight_map = apply_index(sel, index, job.where)
    report_selection(reporter, sel)
    warn_no_tokenizer(reporter, sel, job.where)
    to_fetch = job.plan(sel)
    total = sum(f.size or 0 for f in to_fetch)
    # Weight files become their blobs as they arrive: only a big other file needs a temp copy.
    temp = max((f.size for f in to_fetch if f.path not in sel.weights and (f.size or 0) > IN_MEMORY_LIMIT),
               default=0)
    check_free_space(workspace, total + temp)
    reporter.status("files", f"{len(sel.weights)} weight file(s), {len(sel.files)} other file(s); "
                             f"{human_bytes(total)} to fetch")

    workspace.ensure_store()
    start_worker(model_type)  # the worker, started already, also imports this architecture's code
    # One progress bar for every byte the transfers fetch (weights, big other files).
    bar_class = reporter.progress_bar()
    if bar_class is not None:
        barred = [f for f in to_fetch if f.path in sel.weights or (f.size or 0) > IN_MEMORY_LIMIT]
        # The bar names what it counts: the file when there is one, else how many.
        desc = barred[0].path if len(barred) == 1 else f"{len(barred)} files"
        hub.progress = SharedProgress(bar_class, sum(f.size or 0 for f in barred), desc)
    try:
        manifest = job.convert(sel, weight_map, model_type, license_info)
        if hub.progress is not None:
            hub.progress.close()
        load_check = job.verify(manifest)
    except KeyboardInterrupt:
        hub.cancel.set()
        kept = sum(p.stat().st_blocks * 512 for p in kept_partials(workspace.layout.tmp) if p.suffix == ".part")
        raise HubInterruptedError(snap.repo_id, kept) from None
    finally:
        if hub.progress is not None:
            hub.progress.close()
        job.settle()
    entry = register(workspace, name, None, manifest, on_conflict=on_conflict,
                     on_wait=lambda: reporter.status("lock", "waiting for another modelstore writer"))
    return HubImportResult(
        entry=entry, manifest_digest=entry.manifest, manifest=manifest, stats=job.parts.stats,
        skipped=sel.skipped,
        repo_id=snap.repo_id, revision=snap.revision, commit=snap.commit, license=license_info,
        load_check=load_check, downloaded_bytes=job.downloaded_bytes, from_cache=job.from_cache,
        from_store=job.from_store, unchanged=before is not None and entry == before,
    )


class _HubImport:
    """The state of one import: what was fetched, stored, reused."""

    def __init__(self, workspace: Workspace, hub: HubRepo, snap: RepoSnapshot, reporter: Reporter):
        self.workspace, self.hub, self.snap, self.reporter = workspace, hub, snap, reporter
        self.where = f"{snap.repo_id}@{snap.commit[:12]}"
        self.parts = ManifestParts()
        self.small: dict[str, bytes] = {}  # small files fetched early (config, index, LICENSE)
        self.reused: set[str] = set()  # digests found already stored: re-hashed by verify()
        self.stored_shards: dict[str, StoredShard] = {}
        self.downloaded_bytes = 0
        # The last weight file streamed, verified but not yet published: its blobs are
        # published while the load check runs on them (``verify``).
        self.pending: TensorStream | None = None
        self.from_cache: list[str] = []
        self.from_store: list[str] = []

    # --- before writing --------------------------------------------------------------------

    def fetch_small(self, path: str) -> bytes:
        if path not in self.small:
            f = self.snap.files[path]
            self.small[path], cached = self.hub.fetch_bytes(self.snap.commit, f)
            self._count(f, cached)
        return self.small[path]

    def fetch_config(self, ask_token: Callable[[str, str], str | None] | None) -> bytes:
        """config.json, the first file fetched; a gated repo asks for a token (once) if it can."""
        prompted = False
        if self.snap.gated and self.hub.token.value is None and ask_token is not None:
            self._prompt_for_token(ask_token)
            prompted = True
        try:
            return self.fetch_small(CONFIG_FILE)
        except HubGatedRepoError:
            if prompted or ask_token is None:
                raise
            self._prompt_for_token(ask_token)
            return self.fetch_small(CONFIG_FILE)

    def _prompt_for_token(self, ask_token: Callable[[str, str], str | None]) -> None:
        hub = self.hub
        entered = (ask_token(hub.repo_id, f"{hub.endpoint}/{hub.repo_id}") or "").strip()
        if not entered:
            raise HubGatedRepoError(hub.repo_id, hub.endpoint, with_token=False)
        hub.token = Token(entered, "the token you entered")

    def find_license(self, sel: FileSelection) -> LicenseInfo:
        base = f"{self.hub.endpoint}/{self.snap.repo_id}/blob/{self.snap.commit}"
        found = license_from_card(self.snap.repo_id, self.snap.card, base)
        if found is not None:
            return found
        path = license_file(sel.files)
        if path is not None:
            text = self.fetch_small(path).decode("utf-8", errors="replace")
            return license_from_file(self.snap.repo_id, path, text, f"{base}/{path}")
        return LicenseInfo(self.snap.repo_id, None, "none")

    def plan(self, sel: FileSelection) -> list[RemoteFile]:
        """The files still to fetch: not the weight files whose every blob is already stored."""
        self.stored_shards = stored_shards(self.workspace)
        return [self.snap.files[p] for p in sel.weights + sel.files
                if p not in self.small and self.snap.files[p].sha256 not in self.stored_shards]

    # --- writing ---------------------------------------------------------------------------

    def ingest_weights(self, sel: FileSelection, weight_map: dict[str, str] | None) -> None:
        """Each weight file: from the store, the HF cache or a download; verified, then split.

        Downloads run in parallel (a pool of files, as ``snapshot_download`` has, over the
        connections the transfers share: ``registry.hub.transfer``); the files are then
        taken in order, each verified one published before the next is recorded."""
        seen: dict[str, str] = {}
        seen_lock = threading.Lock()
        cached: dict[str, Path] = {}
        downloads: list[str] = []
        for relpath in sel.weights:
            f = self.snap.files[relpath]
            if f.sha256 in self.stored_shards:
                continue
            found = self.hub.cached(self.snap.commit, f)
            if found is not None:
                cached[relpath] = found
            else:
                downloads.append(relpath)
        workers = max(1, min(FILE_WORKERS, self.hub.settings.connections, len(downloads)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hub-file") if downloads else None
        futures: dict[str, Future] = {}
        # Headers are checked in the model's order (a tensor in two files is reported in the later).
        checked = {relpath: threading.Event() for relpath in sel.weights}
        for i, relpath in enumerate(sel.weights, 1):
            if relpath in downloads:
                label = f"{relpath} ({i}/{len(sel.weights)})" if len(sel.weights) > 1 else relpath
                futures[relpath] = pool.submit(stream_weight_file, self.workspace, self.hub, self.snap.commit,
                                               self.snap.files[relpath], seen, weight_map, self.where,
                                               label=label, seen_lock=seen_lock,
                                               after=[checked[p] for p in sel.weights[:i - 1]],
                                               checked=checked[relpath])
        try:
            for relpath in sel.weights:
                f = self.snap.files[relpath]
                if f.sha256 in self.stored_shards:
                    with seen_lock:
                        self._reuse_shard(f, seen, weight_map)
                    checked[relpath].set()
                    continue
                if relpath in futures:
                    stream = futures.pop(relpath).result()
                    # A verified file is published before the next one is recorded: a later
                    # failure keeps it.
                    self.publish_pending()
                    self.pending = stream
                    stored = stream.stored()
                    origin = f.origin()
                    origin.header = keep_bytes(self.workspace, stream.header_bytes, self.parts)
                    record_weight_file(self.parts, stored, relpath, origin)
                else:
                    with seen_lock:
                        check_weight_file(cached[relpath], relpath, seen, name=f"{self.where}/{relpath}")
                        names = [n for n, shard in seen.items() if shard == relpath]
                        check_index(weight_map, relpath, names, self.where)
                    checked[relpath].set()
                    self.publish_pending()
                    stored = ingest_weight_file(self.workspace, cached[relpath], relpath, self.parts,
                                                origin=f.origin())
                self.reused.update(s.put.digest for s in stored if not s.put.written)
                self._count(f, relpath in cached)
                where = ", from the Hugging Face cache" if relpath in cached else ""
                self.reporter.status("weights", f"{relpath}: {len(stored)} tensors, {human_bytes(f.size)}, "
                                                f"sha256 verified{where}")
        except BaseException:
            self.hub.cancel.set()  # the other files stop; their verified blobs are dropped
            for event in checked.values():
                event.set()
            for future in futures.values():
                try:
                    future.result().abort()
                except BaseException:  # noqa: BLE001 - the first failure is the one reported
                    pass
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        self.reporter.status("weights", f"{len(self.parts.tensors)} tensors from {len(sel.weights)} file(s), "
                                        f"{human_bytes(sum(t.nbytes for t in self.parts.tensors.values()))}")

    def publish_pending(self) -> None:
        stream, self.pending = self.pending, None
        if stream is not None:
            stream.publish()

    def settle(self) -> None:
        """After a failure: a verified file still waiting is published, as every one before
        it was, so that running the command again reuses its blobs."""
        try:
            self.publish_pending()
        except ModelStoreError:
            pass  # publish() removed its blobs: the next run fetches that file again

    def _reuse_shard(self, f: RemoteFile, seen: dict[str, str], weight_map: dict[str, str] | None) -> None:
        shard = self.stored_shards[f.sha256]  # type: ignore[index]
        reuse_shard(self.parts, shard, f, seen, weight_map, self.where)
        self.reused.update(t.digest for t in shard.tensors.values())
        self.from_store.append(f.path)
        self.reporter.status("weights", f"{f.path}: {len(shard.tensors)} tensors already in the store "
                                        "(same sha256), not downloaded")

    def convert(self, sel: FileSelection, weight_map: dict[str, str] | None, model_type: str,
                license_info: LicenseInfo) -> Manifest:
        """Every file into the store (the last weight file's blobs still waiting: ``pending``);
        the manifest they make."""
        self.ingest_weights(sel, weight_map)
        self.ingest_files(sel)
        if sel.index:  # kept as published: the view generates its own, export gives this one back
            origin = self.snap.files[sel.index].origin()
            origin.content = keep_bytes(self.workspace, self.fetch_small(sel.index), self.parts)
            self.parts.origin_files[sel.index] = origin
        for component in ("config", "tokenizer", "processor"):
            files = [p for p in sel.files if sel.component(p) == component]
            if files:
                self.reporter.status(component, ", ".join(files))
        hub, snap, parts = self.hub, self.snap, self.parts
        return parts.manifest(
            architecture_type=model_type, model_id=snap.repo_id, source="huggingface", license=license_info.label,
            origin=HubOrigin(endpoint=hub.endpoint, repo_id=snap.repo_id, revision=snap.revision,
                             commit=snap.commit, files=parts.origin_files))

    def ingest_files(self, sel: FileSelection) -> None:
        for relpath in sel.files:
            f = self.snap.files[relpath]
            if relpath in self.small or (f.size or 0) <= IN_MEMORY_LIMIT:
                put = self.workspace.objects.put_bytes(self.fetch_small(relpath))
                self.parts.files[relpath] = FileEntry(digest=put.digest, size=put.size)
                self.parts.origin_files[relpath] = f.origin()
                self.parts.stats.count(put.size, put.written)
            else:
                with self.hub.fetch_file(self.snap.commit, f, self.workspace.layout.tmp) as (path, cached):
                    put = ingest_file(self.workspace, path, relpath, self.parts, origin=f.origin())
                self._count(f, cached)
            if not put.written:
                self.reused.add(put.digest)

    def _count(self, f: RemoteFile, cached: bool) -> None:
        if cached:
            self.from_cache.append(f.path)
        else:
            self.downloaded_bytes += f.size

    # --- verifying -------------------------------------------------------------------------

    def verify(self, manifest: Manifest) -> LoadCheck:
        """Every blob by its digest (those reused are re-hashed now), then the model loads and runs."""
        origins = manifest.origin.files.values()  # type: ignore[union-attr]
        lfs = sum(1 for o in origins if o.sha256)
        self.reporter.status("verify", f"{lfs} LFS file(s) match the Hub's sha256, "
                                       f"{len(origins) - lfs} other file(s) their git blob id")
        for digest in sorted(self.reused):
            actual = self.workspace.objects.rehash(digest)
            if actual != digest:
                raise CorruptObjectError(digest, self.workspace.objects.path(digest), actual)
        blobs = manifest.object_digests()
        self.reporter.status("verify", f"{len(blobs)} blobs match their digests "
                                       f"({len(blobs & self.reused)} were already stored and were re-hashed)")
        self.reporter.status("verify", "loading the model and running a forward pass")
        # Publishes ``pending`` while the model loads (if it fails first, ``settle`` does).
        check = check_loads(self.workspace, manifest, unpublished=self.pending)
        self.reporter.status("verify", check.detail)
        for warning in check.warnings:
            self.reporter.warning(warning)
        return check
