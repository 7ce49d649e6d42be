"""torch tensors <-> the store's canonical one-tensor blobs.

Writing: a tensor's raw bytes go to ``ObjectStore.put_tensor`` as they are in memory (no
safetensors file in between), so a tensor that did not change yields the same blob, and
the same digest, as the imported file it came from.

Reading: each blob is mapped copy-on-write (``MAP_PRIVATE``) and wrapped as a tensor
without copying. Pages are read from the page cache only when touched, writes (an optimizer
step) go to private pages and never reach the immutable object, and loading a model costs
about as much as ``from_pretrained`` mapping one big safetensors file. Each blob's header
and size are checked against the manifest on the way (a cheap ``pread``).

Verifying: a load never uses bytes that no longer match their digest (a blob rewritten
through a view's link by root, bit rot). Small files (config, tokenizer) are hashed before
they are used (``read_model_file``, ``verify_files``); the tensor blobs are hashed by a
``BlobCheck`` thread (BLAKE3's ``update_mmap``, which releases the GIL and uses every core)
while the model is built from the mapped tensors, and the load joins it before it returns
the model (``Adapter.load_manifest``): a mismatch is one ``BlobChangedError`` naming the
model, the tensor or file, and ``validate-registry --fix``.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import blake3
import torch

from store.errors import CorruptObjectError, ModelStoreError, Next, ObjectMissingError, SourceError, Text
from store.manifest import Manifest, TensorEntry
from store.objects import ObjectStore, PutResult
from store.tensors.tensorfile import canonical_header

if sys.byteorder != "little":  # safetensors is little-endian; raw bytes are written as in memory
    raise ImportError("modelstore's tensor blobs need a little-endian machine")

# safetensors dtype names <-> torch dtypes (every dtype both sides know).
TORCH_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16,
    "U16": torch.uint16, "I32": torch.int32, "U32": torch.uint32, "I64": torch.int64,
    "U64": torch.uint64, "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32,
    "F64": torch.float64, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "C64": torch.complex64,
}
if hasattr(torch, "float8_e8m0fnu"):
    TORCH_DTYPES["F8_E8M0"] = torch.float8_e8m0fnu
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in TORCH_DTYPES.items()}


def dtype_name(dtype: torch.dtype) -> str:
    try:
        return DTYPE_NAMES[dtype]
    except KeyError:
        raise TypeError(f"tensors of dtype {dtype} cannot be stored as safetensors") from None


def raw_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's elements as contiguous little-endian bytes (a view when it already is)."""
    flat = tensor.detach()
    if flat.device.type != "cpu":
        flat = flat.cpu()
    flat = flat.contiguous().reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")


def put_torch_tensor(objects: ObjectStore, name: str, tensor: torch.Tensor) -> tuple[TensorEntry, PutResult]:
    """Store ``tensor`` as the canonical blob of ``name``; return its manifest entry."""
    dtype = dtype_name(tensor.dtype)
    shape = list(tensor.shape)
    data = raw_bytes(tensor)
    put = objects.put_tensor(name, dtype, shape, data)
    return TensorEntry(digest=put.digest, dtype=dtype, shape=shape, nbytes=len(data)), put


def map_tensor(objects: ObjectStore, name: str, entry: TensorEntry) -> torch.Tensor:
    """A copy-on-write, lazily paged tensor over the blob of ``name``."""
    path = objects.path(entry.digest)
    head = canonical_header(name, entry.dtype, entry.shape, entry.nbytes)
    dtype = TORCH_DTYPES.get(entry.dtype)
    if dtype is None:
        raise TypeError(f"tensor {name!r} has dtype {entry.dtype}, which torch cannot load")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ObjectMissingError(entry.digest, path) from None
    try:
        size = os.fstat(fd).st_size
        if size != len(head) + entry.nbytes or os.pread(fd, len(head), 0) != head:
            raise CorruptObjectError(entry.digest, path, None,
                                     f"it is not the blob of tensor {name!r} {entry.dtype} {entry.shape} "
                                     f"the manifest lists ({size} bytes)")
        if entry.nbytes == 0:
            return torch.empty(entry.shape, dtype=dtype)
        mapped = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)  # the mapping keeps the file's pages; the descriptor is not needed
    _advise_large_folios(mapped)
    # frombuffer keeps ``mapped`` alive for as long as the tensor (or a view of it) lives.
    flat = torch.frombuffer(mapped, dtype=dtype, offset=len(head), count=entry.nbytes // dtype.itemsize)
    return flat.view(entry.shape)


def _advise_large_folios(mapped: mmap.mmap) -> None:
    """Ask for huge pages where the kernel allows them (Linux THP).

    When the blob is not in the page cache, first-touch readahead then reads it as 2 MB
    folios instead of ramping up from 4 KB pages per file (one file per tensor never ramps
    far): a cold load reads faster, and every later touch faults once per folio rather than
    per page (measured: touching 1 GB of weights mapped from blobs, 10 ms instead of 90 ms).
    A hint only: unsupported kernels or settings just ignore it.
    """
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        try:
            mapped.madvise(advice)
        except OSError:
            pass


def map_tensors(objects: ObjectStore, tensors: dict[str, TensorEntry]) -> dict[str, torch.Tensor]:
    return {name: map_tensor(objects, name, entry) for name, entry in tensors.items()}


def read_model_file(objects: ObjectStore, manifest: Manifest, relpath: str, *, label: str | None = None) -> bytes:
    """A (small) file of the model, verified by digest before it is used."""
    entry = manifest.files.get(relpath)
    if entry is None:
        raise SourceError(relpath, f"model {manifest.model_id!r} has no {relpath}",
                          "re-import the model from a complete folder")
    try:
        return objects.read_bytes(entry.digest, verify=True)
    except CorruptObjectError as e:
        raise BlobChangedError(label or manifest.model_id, relpath, e.digest, e.path, e.actual) from None


def read_config(objects: ObjectStore, manifest: Manifest, *, label: str | None = None) -> dict:
    data = read_model_file(objects, manifest, "config.json", label=label)
    try:
        config = json.loads(data)
    except ValueError as e:
        raise SourceError("config.json",
                          f"config.json of {manifest.model_id!r} is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise SourceError("config.json", f"config.json of {manifest.model_id!r} is not a JSON object")
    return config


@contextmanager
def files_folder(objects: ObjectStore, manifest: Manifest) -> Iterator[Path]:
    """A temporary folder of symlinks to the model's files (config, tokenizer, ...).

    For loading what needs a folder (tokenizers) from a manifest that has no view, such as
    a training checkpoint. It lives in the system temp dir, not in the store, and only
    links to objects, so nothing is copied and the store is never written.
    """
    with tempfile.TemporaryDirectory(prefix="modelstore-files-") as tmp:
        folder = Path(tmp)
        for relpath, entry in manifest.files.items():
            link = folder / relpath
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(objects.path(entry.digest), link)
        yield folder


# --- verifying what a load reads ------------------------------------------------------------


class BlobChangedError(ModelStoreError, ValueError):
    """A blob a load was about to use no longer hashes to its digest: nothing is loaded."""

    def __init__(self, model: str, item: str, digest: str, path: Path, actual: str | None):
        now = f"now hashes to {actual[:12]}" if actual else "can no longer be read as it was stored"
        super().__init__(
            f"model {model!r}: {item} no longer matches what the store holds (object {digest[:12]} "
            f"{now}; {path}); nothing was loaded",
            Text("run `", Next("validate-registry", "--fix"), "` to quarantine the object and restore it"),
        )
        self.model = model
        self.item = item
        self.digest = digest
        self.path = Path(path)
        self.actual = actual


def blob_digest(path: Path) -> str:
    """BLAKE3 of the file at ``path``, mapped, on every core, without holding the GIL."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    if os.path.getsize(path):  # an empty file cannot be mapped
        hasher.update_mmap(path)
    return hasher.hexdigest()


def verify_blob(objects: ObjectStore, digest: str, model: str, item: str) -> None:
    path = objects.path(digest)
    try:
        actual = blob_digest(path)
    except FileNotFoundError:
        raise ObjectMissingError(digest, path) from None
    if actual != digest:
        raise BlobChangedError(model, item, digest, path, actual)


def verify_files(objects: ObjectStore, manifest: Manifest, model: str) -> None:
    """Hash every (small) file of the model before anything reads it: config, tokenizer, ..."""
    for relpath, entry in sorted(manifest.files.items()):
        verify_blob(objects, entry.digest, model, relpath)


class BlobCheck:
    """Hashes a model's tensor blobs in a thread while the caller builds the model; ``join``
    returns once every blob matched its digest, or raises the first that did not.

    Each distinct blob is hashed once. ``update_mmap`` releases the GIL, so building the
    model from the mapped tensors goes on meanwhile; the hash reads the blobs through the
    page cache the mapped tensors also read from (each byte comes from the disk once).
    """

    def __init__(self, objects: ObjectStore, tensors: dict[str, TensorEntry], model: str):
        self._items: dict[str, str] = {}  # digest -> the first tensor that uses it
        for name, entry in tensors.items():
            self._items.setdefault(entry.digest, name)
        self._objects, self._model = objects, model
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelstore-verify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for digest, name in self._items.items():
                if self._stop.is_set():
                    return
                verify_blob(self._objects, digest, self._model, f"tensor {name!r}")
        except BaseException as e:  # noqa: BLE001 - handed to the caller by join()
            self._error = e

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def cancel(self) -> None:
        """Stop after the blob being hashed (the load failed or was interrupted)."""
        self._stop.set()
        self._thread.join()
