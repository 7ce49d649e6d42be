"""export-model: a model as a standalone folder of real files, for another machine or ``hf upload``.

An imported model comes back exactly as it was upstream, byte for byte: every file from its
blob, every weight file rebuilt from the safetensors header kept at import (``OriginFile.
header``) and its tensor blobs, laid at the header's offsets, and the checkpoint index from
its kept bytes (``OriginFile.content``). Every byte written is checked on the way: each blob
against its BLAKE3 digest as it is read, each file against the sha256 (LFS) or git blob id
the Hub recorded, and its size. A model imported before headers were kept gets its header
rebuilt the way safetensors writes one (metadata, then the tensors in data order, compact
JSON padded to 8 bytes) where the recorded sha256 confirms the result; otherwise, and for
trained models, the weights are written as ``save_pretrained`` shards them
(``max_shard_size``, index and all), and the result says so.

The folder is built beside the destination under a hidden name and renamed into place when
complete: a failure leaves nothing half-written. A destination that exists must be empty.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from registry.ingest.model_files import INDEX_SUFFIX
from registry.ops import get_model
from registry.report import NullReporter, Reporter
from registry.workspace import Workspace
from store.fs import fsops
from store.errors import CorruptObjectError, ModelStoreError, Next, Text
from store.manifest import HubOrigin, LocalOrigin, Manifest, OriginFile, TensorEntry
from store.objects import ObjectStore
from store.tensors.tensorfile import canonical_header, parse_header

DEFAULT_MAX_SHARD_SIZE = 5_000_000_000  # save_pretrained's default ("5GB")
WRITEBACK_STEP = 32 << 20  # start the disk writing behind the copy every this many bytes
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}


class ExportError(ModelStoreError, OSError):
    """The export could not be made; nothing was left at the destination."""

    def __init__(self, path: Path, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.path = path


@dataclass
class ExportResult:
    name: str
    folder: Path
    files: list[str] = field(default_factory=list)
    total_bytes: int = 0
    exact: bool = True  # every file byte for byte as upstream (imported models)
    verified: list[str] = field(default_factory=list)  # files checked against the Hub's own hash
    regrouped: str | None = None  # why the weights were written as new shards, if they were


@dataclass
class _Out:
    relpath: str
    size: int
    write: Callable[[int | None, Callable[[int], None]], None]  # (fd or None: hash only, progress); raises
    checked: bool = False  # against an upstream hash


def export_model(workspace: Workspace, name: str, dest: Path | str, *,
                 max_shard_size: int = DEFAULT_MAX_SHARD_SIZE, reporter: Reporter | None = None) -> ExportResult:
    """Write model ``name`` into ``dest`` as real files (see the module docstring)."""
    reporter = reporter or NullReporter()
    _, manifest = get_model(workspace, name)
    dest = Path(dest).expanduser().absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(dest, f"{dest} exists and is not an empty folder", "name a new or empty folder")
    result = ExportResult(name=name, folder=dest)
    outputs = plan_files(workspace.objects, manifest, max_shard_size, result)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    bar_class = reporter.progress_bar()
    total = sum(o.size for o in outputs)
    bar = bar_class(total=total, unit="B", unit_scale=True, desc=f"export {name}") if bar_class else None
    try:
        for out in outputs:
            path = staging / out.relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                out.write(fd, bar.update if bar is not None else (lambda n: None))
                os.fsync(fd)
            finally:
                os.close(fd)
            result.files.append(out.relpath)
            if out.checked:
                result.verified.append(out.relpath)
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    result.total_bytes = total
    reporter.status("export", f"{len(result.files)} files, {total:,} bytes"
                    + (", byte for byte as upstream" if result.exact and manifest.origin else ""))
    return result


def plan_files(objects: ObjectStore, manifest: Manifest, max_shard_size: int, result: ExportResult) -> list[_Out]:
    """Every file of the export, with how to write it."""
    origin = manifest.origin if isinstance(manifest.origin, (HubOrigin, LocalOrigin)) else None
    upstream = origin.files if origin is not None else {}
    outputs = [_Out(relpath, entry.size, _blob_writer(objects, entry.digest, upstream.get(relpath), relpath),
                    checked=_has_hash(upstream.get(relpath)))
               for relpath, entry in sorted(manifest.files.items())]
    weights = {p: f for p, f in upstream.items() if f.tensors}
    rebuilt = {p: rebuilt_header(f, manifest.tensors) for p, f in weights.items()}
    kept_index = [(p, f) for p, f in upstream.items() if p.endswith(INDEX_SUFFIX) and f.content is not None]
    covered = {t for f in weights.values() for t in f.tensors}
    if weights and all(h is not None for h in rebuilt.values()) and covered == set(manifest.tensors) \
            and (kept_index or len(weights) == 1):
        for relpath, f in sorted(weights.items()):
            outputs.append(_Out(relpath, f.size, _weight_writer(objects, manifest, f, rebuilt[relpath], relpath),
                                checked=_has_hash(f)))
        for relpath, f in kept_index:
            outputs.append(_Out(relpath, f.size, _blob_writer(objects, f.content.digest, f, relpath),
                                checked=_has_hash(f)))
        result.exact = origin is not None
        return outputs
    if origin is not None:
        result.exact = False
        result.regrouped = ("the model was imported before modelstore kept weight files' headers, and no "
                            "recorded sha256 confirms a rebuilt one")
    return outputs + _sharded(objects, manifest, max_shard_size)


def rebuilt_header(f: OriginFile, tensors: dict[str, TensorEntry]) -> bytes | None:
    """The file's header: the kept one, else the one safetensors would write, if its sha256
    (the file's, rebuilt with it) matches the recorded one; None when neither can be had."""
    if f.header is not None:
        return b""  # read from its blob when written
    if f.sha256 is None or any(t not in tensors for t in f.tensors):
        return None
    for metadata in ({"format": "pt"}, None):
        head = safetensors_header([(n, tensors[n]) for n in f.tensors], metadata)
        if len(head) + sum(tensors[n].nbytes for n in f.tensors) == f.size:
            return head  # the sha256 check while writing confirms it, or the export fails
    return None


def safetensors_header(entries: list[tuple[str, TensorEntry]], metadata: dict | None) -> bytes:
    """A safetensors header as the safetensors library writes one: ``__metadata__`` first, the
    tensors in data order, compact JSON, padded with spaces to a multiple of 8."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, t in entries:
        header[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def _sharded(objects: ObjectStore, manifest: Manifest, max_shard_size: int) -> list[_Out]:
    """The weights as save_pretrained shards them: tensors in the model's order, a new shard
    when the next would pass ``max_shard_size``, safetensors' own header layout."""
    from huggingface_hub import split_state_dict_into_shards_factory

    split = split_state_dict_into_shards_factory(
        dict(manifest.tensors), get_storage_size=lambda t: t.nbytes, get_storage_id=lambda t: None,
        filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size)
    outputs = []
    for filename, names in split.filename_to_tensors.items():
        # safetensors orders data by alignment (largest first), then by name.
        order = sorted(names, key=lambda n: (-DTYPE_SIZES.get(manifest.tensors[n].dtype, 1), n))
        head = safetensors_header([(n, manifest.tensors[n]) for n in order], {"format": "pt"})
        f = OriginFile(size=len(head) + sum(manifest.tensors[n].nbytes for n in order), tensors=order)
        outputs.append(_Out(filename, f.size, _weight_writer(objects, manifest, f, head, filename)))
    if split.is_sharded:
        index = {"metadata": {"total_size": sum(t.nbytes for t in manifest.tensors.values())},
                 "weight_map": dict(sorted(split.tensor_to_filename.items()))}
        data = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
        outputs.append(_Out("model.safetensors.index.json", len(data), _bytes_writer(data)))
    return outputs


def _has_hash(f: OriginFile | None) -> bool:
    return f is not None and bool(f.sha256 or f.git_oid)


class _Upstream:
    """The upstream hash of a file as it is written: sha256 (LFS) or the git blob id."""

    def __init__(self, f: OriginFile | None, relpath: str):
        self.file, self.relpath = f, relpath
        if f is not None and f.sha256:
            self.hash, self.expected, self.kind = hashlib.sha256(), f.sha256, "sha256"
        elif f is not None and f.git_oid:
            self.hash, self.expected, self.kind = hashlib.sha1(b"blob %d\0" % f.size), f.git_oid, "git blob id"
        else:
            self.hash = None

    def update(self, data) -> None:
        if self.hash is not None:
            self.hash.update(data)

    def check(self, written: int) -> None:
        if self.file is not None and written != self.file.size:
            raise ExportError(Path(self.relpath), f"{self.relpath}: rebuilt {written:,} bytes, upstream it has "
                                                  f"{self.file.size:,}", Text("check the store: ", Next("validate-registry")))
        if self.hash is not None and self.hash.hexdigest() != self.expected:
            raise ExportError(Path(self.relpath), f"{self.relpath}: the rebuilt bytes do not match the "
                                                  f"{self.kind} recorded at import", Text("repair the store: ", Next("validate-registry", "--fix")))


def check_blob(objects: ObjectStore, digest: str) -> None:
    """The blob hashes to its name (BLAKE3 over a map of its pages, on one core: the export
    runs this a blob ahead of the copy, so the two share the machine)."""
    path = objects.path(digest)
    hasher = blake3.blake3(max_threads=1)
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                hasher.update(mapped)
    if hasher.hexdigest() != digest:
        raise CorruptObjectError(digest, path, None, "its bytes no longer match its name")


def _hash_blob(objects: ObjectStore, digest: str, skip: int, upstream: _Upstream) -> int:
    """Feed the (checked) blob ``digest`` from byte ``skip`` on to the upstream hash, from its
    mapped pages; return its byte count from ``skip``."""
    path = objects.path(digest)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if upstream.hash is not None and size > skip:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
                upstream.update(view[skip:])
    return max(size - skip, 0)


def _copy_blob(objects: ObjectStore, digest: str, skip: int, fd: int, at: int) -> int:
    """Copy the (checked) blob ``digest`` from byte ``skip`` on into ``fd`` at offset ``at``;
    return the bytes copied. The copy is the kernel's (``copy_file_range``: no Python buffers)."""
    path = objects.path(digest)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        count, src = size - skip, skip
        while count > 0:
            done = os.copy_file_range(f.fileno(), fd, count, src, at)
            if done == 0:
                raise OSError(errno.EIO, f"copy_file_range stopped short copying {path}")
            count, src, at = count - done, src + done, at + done
    return max(size - skip, 0)


class _Copier:
    """Copies blobs into one output file from a thread of its own, in order, while the caller
    feeds the same bytes to the upstream hash: one SHA-256 over a file cannot be split, so
    it sets the pace, and the copies and their writeback go on beside it rather than after
    each blob's hash. ``fd`` None (hash only): nothing is copied."""

    def __init__(self, objects: ObjectStore, fd: int | None):
        self.objects, self.fd = objects, fd
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-copy") if fd is not None else None
        self.copies: list = []
        self.started = 0  # bytes whose writeback was started: the disk works while the copy goes on

    def submit(self, digest: str, skip: int, at: int) -> None:
        if self.pool is not None:
            self.copies.append(self.pool.submit(self._copy, digest, skip, at))

    def _copy(self, digest: str, skip: int, at: int) -> None:
        end = at + _copy_blob(self.objects, digest, skip, self.fd, at)
        if end - self.started >= WRITEBACK_STEP:
            fsops.start_writeback(self.fd)
            self.started = end

    def __enter__(self) -> _Copier:
        return self

    def __exit__(self, kind, error, tb) -> None:
        """Wait for every copy; the first copy's error is raised (after the caller's own)."""
        if self.pool is None:
            return
        if kind is not None:
            for copy in self.copies:
                copy.cancel()
        self.pool.shutdown(wait=True)
        if kind is None:
            for copy in self.copies:
                copy.result()


def _checked_ahead(objects: ObjectStore, digests: list[str]) -> Iterator[str]:
    """``digests`` in order, each once its blob is checked; the checks run ahead in a thread
    (hashing releases the GIL) while the caller copies the blobs already checked."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        checks = [pool.submit(check_blob, objects, d) for d in digests]
        try:
            for digest, check in zip(digests, checks):
                check.result()
                yield digest
        finally:
            for check in checks:
                check.cancel()


def _write_all(fd: int | None, data, at: int) -> None:
    if fd is None:
        return
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, at)
        view, at = view[done:], at + done


def _blob_writer(objects: ObjectStore, digest: str, f: OriginFile | None, relpath: str):
    def write(fd: int, progress: Callable[[int], None]) -> None:
        upstream = _Upstream(f, relpath)
        check_blob(objects, digest)
        written = _hash_blob(objects, digest, 0, upstream)
        if fd is not None:
            _copy_blob(objects, digest, 0, fd, 0)
        progress(written)
        upstream.check(written)
    return write


def _bytes_writer(data: bytes):
    def write(fd: int, progress: Callable[[int], None]) -> None:
        _write_all(fd, data, 0)
        progress(len(data))
    return write


def _weight_writer(objects: ObjectStore, manifest: Manifest, f: OriginFile, head: bytes, relpath: str):
    def write(fd: int, progress: Callable[[int], None]) -> None:
        header = head or _read_checked(objects, f.header.digest)
        specs = parse_header(Path(relpath), header[8:], f.size).tensors
        upstream = _Upstream(f, relpath)
        _write_all(fd, header, 0)
        upstream.update(header)
        progress(len(header))
        written = len(header)
        specs = sorted(specs, key=lambda s: s.start)
        checked = _checked_ahead(objects, [manifest.tensors[spec.name].digest for spec in specs])
        with _Copier(objects, fd) as copier:
            for spec, _ in zip(specs, checked):
                if spec.start > written:  # a gap in the data section (never seen): zeros
                    gap = bytes(spec.start - written)
                    _write_all(fd, gap, written)
                    upstream.update(gap)
                    written = spec.start
                t = manifest.tensors[spec.name]
                skip = len(canonical_header(spec.name, t.dtype, t.shape, t.nbytes))
                copier.submit(t.digest, skip, written)
                size = _hash_blob(objects, t.digest, skip, upstream)
                written += size
                progress(size)
        upstream.check(written)
    return write


def _read_checked(objects: ObjectStore, digest: str) -> bytes:
    return objects.read_bytes(digest, verify=True)


@dataclass
class UpstreamCheck:
    model: str
    relpath: str
    kind: str  # "sha256" or "git blob id"
    problem: str | None = None  # None: the rebuilt bytes match


def verify_upstream(workspace: Workspace, names: list[str] | None = None,
                    reporter: Reporter | None = None) -> list[UpstreamCheck]:
    """Rebuild, from the store alone, the upstream bytes of every file of every registered
    Hub model that has a recorded hash, and check them against it: offline proof that the
    store holds exactly what was published. Nothing is written anywhere."""
    reporter = reporter or NullReporter()
    registry = workspace.read_registry().models
    checks: list[UpstreamCheck] = []
    for name in names if names is not None else sorted(registry):
        _, manifest = get_model(workspace, name)
        if not isinstance(manifest.origin, HubOrigin):
            continue
        outputs = plan_files(workspace.objects, manifest, DEFAULT_MAX_SHARD_SIZE, ExportResult(name, Path()))
        upstream = manifest.origin.files
        for out in outputs:
            if not out.checked:
                continue
            f = upstream[out.relpath]
            check = UpstreamCheck(name, out.relpath, "sha256" if f.sha256 else "git blob id")
            try:
                out.write(None, lambda n: None)  # hash only: nothing is written
            except ModelStoreError as e:
                check.problem = e.message
            checks.append(check)
    bad = sum(1 for c in checks if c.problem)
    reporter.status("upstream", f"{len(checks)} file(s) rebuilt from the store, {bad} not as published")
    return checks
