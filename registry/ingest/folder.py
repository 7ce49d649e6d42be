"""Importing a Hugging Face-format model folder into the store.

The folder is only read: its safetensors files are split into per-tensor blobs, its other
files copied verbatim, every blob verified by digest as it is written. Everything that can
be checked without writing (file selection, pickle refusal, every safetensors header,
tensor names, the architecture) is checked first, so bad input changes nothing.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from adapters import check_supported
from adapters.shapes import compare, expected_tensors
from registry.ingest.source_files import scan_folder
from registry.ops import ConflictPolicy, register, resolve_conflict
from registry.ingest.model_files import (
    CONFIG_FILE,
    FileSelection,
    apply_index,
    license_from_readme,
    read_config,
    select_files,
)
from registry.names import derive_name, validate_name
from registry.registry_file import RegistryEntry
from registry.report import NullReporter, Reporter, human_bytes
from registry.views import tensor_name_problem
from registry.workspace import Workspace
from store.errors import ModelStoreError, SafetensorsError, SourceError, StoreIOError
from store.manifest import FileEntry, LocalOrigin, Manifest, Origin, OriginFile, Source, TensorEntry, now_iso
from store.objects import PutResult, StoredTensor
from store.sourcecache import SourceCache
from store.tensors.tensorfile import TensorSpec, header_length, read_header


@dataclass
class IngestStats:
    new_objects: int = 0
    new_bytes: int = 0
    reused_objects: int = 0
    reused_bytes: int = 0

    def count(self, size: int, written: bool) -> None:
        if written:
            self.new_objects += 1
            self.new_bytes += size
        else:
            self.reused_objects += 1
            self.reused_bytes += size


@dataclass
class ManifestParts:
    """What ingesting a model's files yields, before it becomes a manifest."""

    files: dict[str, FileEntry] = field(default_factory=dict)
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    origin_files: dict[str, OriginFile] = field(default_factory=dict)
    stats: IngestStats = field(default_factory=IngestStats)

    @property
    def params(self) -> int:
        total = 0
        for t in self.tensors.values():
            n = 1
            for d in t.shape:
                n *= d
            total += n
        return total

    def manifest(self, *, architecture_type: str, model_id: str, source: Source, license: str | None,
                 origin: Origin) -> Manifest:
        """The imported model version: these files and tensors, from ``origin``, made now."""
        return Manifest(architecture_type=architecture_type, model_id=model_id, source=source,
                        created_at=now_iso(), license=license, params=self.params, files=self.files,
                        tensors=self.tensors, origin=origin)


def check_weight_file(path: Path, relpath: str, seen: dict[str, str], name: str | None = None,
                      shapes: dict[str, tuple[int, ...]] | None = None) -> None:
    """Validate one safetensors file before anything is written: header and tensor names.

    ``name``: what errors call the file, when ``path`` is a temp file (a Hub download).
    ``shapes``: filled with each tensor's shape."""
    header = read_header(path, name=name)
    check_tensor_names(header.tensors, relpath, seen, name or path)
    if shapes is not None:
        shapes.update((spec.name, tuple(spec.shape)) for spec in header.tensors)


def check_tensor_names(specs: list[TensorSpec], relpath: str, seen: dict[str, str],
                       shown: Path | str) -> None:
    """Every name usable, and in no other weight file (``seen``: name -> file, extended here)."""
    for spec in specs:
        problem = tensor_name_problem(spec.name)
        if problem:
            raise SafetensorsError(shown, f"tensor name {spec.name!r} is unusable: {problem}")
        if spec.name in seen:
            raise SafetensorsError(shown, f"tensor {spec.name!r} is also in {seen[spec.name]}")
        seen[spec.name] = relpath


def ingest_weight_file(workspace: Workspace, path: Path, relpath: str, parts: ManifestParts,
                       origin: OriginFile | None = None, cache: SourceCache | None = None,
                       on_bytes: Callable[[int], None] | None = None) -> list[StoredTensor]:
    """Split one safetensors file into tensor blobs and record them in ``parts``.

    ``cache``: the source folder's remembered files; an unchanged file is not read again.
    ``on_bytes(n)``: told each tensor's size as it is stored (a progress bar)."""
    stored = (cache.put_tensors(relpath, path, on_bytes) if cache is not None
              else workspace.objects.put_tensors(path, on_bytes=on_bytes))
    origin = origin or OriginFile(size=path.stat().st_size)
    origin.header = keep_bytes(workspace, read_head(path), parts)
    record_weight_file(parts, stored, relpath, origin)
    return stored


def read_head(path: Path) -> bytes:
    """A safetensors file's header as it is on disk: the 8-byte length and the JSON (padding
    included), everything before the first tensor's data."""
    with open(path, "rb") as f:
        first = f.read(8)
        length = header_length(path, first, os.fstat(f.fileno()).st_size)
        return first + f.read(length)


def keep_bytes(workspace: Workspace, data: bytes, parts: ManifestParts) -> FileEntry:
    """Keep upstream bytes the manifest holds nowhere else (a header, an index) as a blob."""
    put = workspace.objects.put_bytes(data)
    parts.stats.count(put.size, put.written)
    return FileEntry(digest=put.digest, size=put.size)


def record_weight_file(parts: ManifestParts, stored: list[StoredTensor], relpath: str,
                       origin: OriginFile) -> None:
    """Record one weight file's stored tensors (in its header's order) in ``parts``."""
    for item in stored:
        spec = item.spec
        parts.tensors[spec.name] = TensorEntry(
            digest=item.put.digest, dtype=spec.dtype, shape=list(spec.shape), nbytes=spec.nbytes
        )
        parts.stats.count(item.put.size, item.put.written)
    origin.tensors = [item.spec.name for item in stored]
    parts.origin_files[relpath] = origin


def ingest_file(workspace: Workspace, path: Path, relpath: str, parts: ManifestParts,
                origin: OriginFile | None = None, cache: SourceCache | None = None) -> PutResult:
    put = cache.put_file(relpath, path) if cache is not None else workspace.objects.put_file(path)
    parts.files[relpath] = FileEntry(digest=put.digest, size=put.size)
    parts.origin_files[relpath] = origin or OriginFile(size=put.size)
    parts.stats.count(put.size, put.written)
    return put


def report_selection(reporter: Reporter, sel: FileSelection) -> None:
    for path, why in sel.skipped.items():
        if why != "hidden file":
            reporter.warning(f"skipped {path}: {why}")


def warn_no_tokenizer(reporter: Reporter, sel: FileSelection, where: str) -> None:
    """A model without tokenizer files imports, but cannot generate or fine-tune on its own."""
    if not any(sel.component(p) == "tokenizer" for p in sel.files):
        reporter.warning(f"{where} has no tokenizer files: generate needs --tokenizer PATH_OR_NAME, "
                         "and a fine-tune a `tokenizer` key in its config")


class DeferredReporter(Reporter):
    """Holds status lines back until ``flush()`` (dropped if never flushed); warnings and
    progress bars go through. A re-run of an import that turns out to change nothing then
    prints only its one result line."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.held: list[tuple[str, str]] = []

    def status(self, component: str, message: str) -> None:
        self.held.append((component, message))

    def warning(self, message: str) -> None:
        self.inner.warning(message)

    def progress_bar(self) -> type | None:
        return self.inner.progress_bar()

    def progress(self, desc: str, total: int, unit: str = "B"):
        return self.inner.progress(desc, total, unit)

    def flush(self) -> None:
        for component, message in self.held:
            self.inner.status(component, message)
        self.held = []


@dataclass
class ImportResult:
    entry: RegistryEntry
    manifest_digest: str
    manifest: Manifest
    stats: IngestStats
    skipped: dict[str, str]
    unchanged: bool = False  # the name held this very version already: nothing was changed


def import_folder(
    workspace: Workspace,
    source: Path | str,
    *,
    name: str | None = None,
    on_conflict: ConflictPolicy = "cancel",
    reporter: Reporter | None = None,
    follow_links: bool = False,
    load_check: bool = False,
) -> ImportResult:
    """Import a local Hugging Face-format folder under ``name`` (derived from the folder if None).

    Every import checks the weights against config.json (names and shapes; see
    ``check_config_against_weights``) before anything is registered; ``load_check`` also
    loads the stored model and runs a forward pass, as a Hub import does. ``follow_links``
    allows files that are links out of the folder (registry/ingest/source_files.py)."""
    reporter = reporter or NullReporter()
    source = Path(source).expanduser().absolute()
    name = validate_name(name) if name is not None else derive_name(source.name)
    if not source.is_dir():
        raise SourceError(source, f"{source} is not a folder" if source.exists() else f"{source} does not exist",
                          "pass a model folder, or a Hub repo id such as Qwen/Qwen2.5-0.5B")

    # Everything below, up to ensure_store, only reads.
    listing = scan_folder(source, follow_links=follow_links)
    sel = select_files(listing.paths, str(source))
    for relpath in [*filter(None, [sel.index]), *sel.weights, *sel.files]:
        if relpath in listing.problems:
            raise SourceError(source / relpath, f"{source / relpath} {listing.problems[relpath]}",
                              "replace it with the file itself (links out of the folder: --follow-links)"
                              if "outside the folder" in listing.problems[relpath] else
                              "replace it with the file itself")
    sel.skipped.update((p, why) for p, why in listing.problems.items() if p not in sel.skipped)
    weight_map = apply_index(sel, (source / sel.index).read_bytes(), str(source)) if sel.index else None
    config = read_config((source / CONFIG_FILE).read_bytes(), str(source))
    model_type = check_supported(config.get("model_type"), f" in {source / CONFIG_FILE}")
    expected = expected_tensors(config)
    if expected is None:  # no closed form: the meta-device model, in the load-check worker
        from registry.check.loadcheck import in_process, start_worker

        if not in_process():
            start_worker(model_type)
    seen: dict[str, str] = {}
    found: dict[str, tuple[int, ...]] = {}
    for relpath in sel.weights:
        check_weight_file(source / relpath, relpath, seen, shapes=found)
    if weight_map is not None and set(weight_map) != set(seen):
        missing = sorted(set(weight_map) - set(seen)) or sorted(set(seen) - set(weight_map))
        raise SafetensorsError(source / sel.index, f"index and shards disagree about tensor {missing[0]!r}")
    report_selection(reporter, sel)
    warn_no_tokenizer(reporter, sel, str(source))
    same_source = lambda m: isinstance(m.origin, LocalOrigin) and m.origin.path == str(source)  # noqa: E731
    before = registered_from(workspace, name, same_source)
    if before is not None:  # a re-run: its status lines only matter if something changes
        reporter = DeferredReporter(reporter)
    on_conflict = decide_conflict(workspace, name, on_conflict, same_source)
    sources = [source / p for p in sel.weights + sel.files]
    check_free_space(workspace, sum(p.stat().st_size for p in sources), sources)

    if expected is not None:
        check_config_against_weights(source, expected, found, [])

    workspace.ensure_store()
    parts = ManifestParts()
    cache = SourceCache(workspace.layout, workspace.objects, source)
    sizes = {relpath: (source / relpath).stat().st_size for relpath in sel.weights}
    with reporter.progress("import", sum(sizes.values())) as bar:
        for relpath in sel.weights:
            done = [0]

            def on_bytes(n: int) -> None:
                done[0] += n
                bar.update(n)

            ingest_weight_file(workspace, source / relpath, relpath, parts, cache=cache, on_bytes=on_bytes)
            bar.update(max(0, sizes[relpath] - done[0]))  # headers, and files not read again
    unread = sum(1 for p in sel.weights if p in cache.hits)
    reporter.status("weights", f"{len(parts.tensors)} tensors from {len(sel.weights)} file(s), "
                    f"{human_bytes(sum(t.nbytes for t in parts.tensors.values()))}"
                    + (f"; {unread} file(s) unchanged since the last import, not read again" if unread else ""))
    for relpath in sel.files:
        ingest_file(workspace, source / relpath, relpath, parts, cache=cache)
    if sel.index:
        index = keep_bytes(workspace, (source / sel.index).read_bytes(), parts)
        parts.origin_files[sel.index] = OriginFile(size=index.size, content=index)
    cache.save()
    for component in ("config", "tokenizer", "processor"):
        files = [p for p in sel.files if sel.component(p) == component]
        if files:
            reporter.status(component, ", ".join(files))

    manifest = parts.manifest(
        architecture_type=model_type, model_id=source.name, source="local", license=_local_license(source, sel),
        origin=LocalOrigin(path=str(source), files=parts.origin_files, hub_repo=listing.hub_repo,
                           hub_commit=listing.hub_commit))
    if expected is None:
        from registry.check.loadcheck import expected_tensors as expected_from_worker

        implied, kept = expected_from_worker(config, source.name)
        check_config_against_weights(source, implied, found, kept)
    if load_check:
        from registry.check.loadcheck import check_loads

        check = check_loads(workspace, manifest)
        reporter.status("load", check.detail)
    entry = register(workspace, name, None, manifest, on_conflict=on_conflict,
                     on_wait=lambda: reporter.status("lock", "waiting for another modelstore writer"))
    unchanged = before is not None and entry == before
    if isinstance(reporter, DeferredReporter) and not unchanged:
        reporter.flush()
    return ImportResult(entry=entry, manifest_digest=entry.manifest, manifest=manifest, stats=parts.stats,
                        skipped=sel.skipped, unchanged=unchanged)


def registered_from(workspace: Workspace, name: str,
                    same_source: Callable[[Manifest], bool]) -> RegistryEntry | None:
    """The entry ``name`` has, if it was imported from the same source (a re-run), else None."""
    try:
        entry = workspace.read_registry().models.get(name)
        return entry if entry is not None and same_source(workspace.manifest(entry.manifest)) else None
    except ModelStoreError:
        return None


def check_config_against_weights(source: Path, expected: dict[str, tuple[int, ...]],
                                  found: dict[str, tuple[int, ...]], kept: list[str]) -> None:
    """The tensors in the files are the ones config.json implies (names and shapes): a config
    that says hidden size 100000 over tiny weights, or weights missing a layer, is refused
    here, in one line naming the first wrong tensor, not when a load allocates 80 GB."""
    problem = compare(expected, found, kept)
    if problem:
        raise SourceError(source, f"{source}: {problem}",
                          "the weights do not match config.json; fix the config or the weights")


def decide_conflict(workspace: Workspace, name: str, policy: ConflictPolicy,
                     same_source: Callable[[Manifest], bool]) -> ConflictPolicy:
    """Settle a taken name now, before any bytes are written: ask an interactive policy and
    keep its answer, refuse at once under "cancel" unless the name came from this source."""
    _, choice = resolve_conflict(workspace, name, policy, same_source)
    return choice or policy


def _local_license(source: Path, sel: FileSelection) -> str | None:
    if "README.md" in sel.files:
        found = license_from_readme((source / "README.md").read_text(errors="replace"))
        if found:
            return found
    return None


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem: what
    ``shutil.disk_usage`` reads, without importing shutil (and bz2, lzma) for it."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_free_space(workspace: Workspace, needed: int, sources: list[Path] | None = None) -> None:
    """Refuse up front when the store's filesystem cannot hold ``needed`` more bytes.

    ``needed`` is what the import would write if no blob were in the store yet. Only when
    that does not fit are ``sources`` hashed (cheap next to writing) to count the bytes
    really missing, so re-importing on a nearly full disk still works.
    """
    probe = workspace.root
    while not probe.exists():
        probe = probe.parent
    free = free_bytes(probe)
    if needed > free and sources:
        needed = sum(workspace.objects.missing_bytes(path) for path in sources)
    if needed > free:
        raise StoreIOError(probe, OSError(errno.ENOSPC, f"{human_bytes(needed)} needed but "
                                          f"{human_bytes(free)} free", str(probe)))
