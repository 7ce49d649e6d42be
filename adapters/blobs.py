"""torch tensors <-> the store's canonical one-tensor blobs.

Writing: a tensor's raw bytes go to ``ObjectStore.put_tensor`` as they are in memory (no
safetensors file in between), so a tensor that did not change yields the same blob, and
the same digest, as the imported file it came from.

Reading: each blob is mapped copy-on-write (``MAP_PRIVATE``) and wrapped as a tensor
without copying. Pages are read from the page cache only when touched, writes (an optimizer
step) go to private pages and never reach the immutable object, and loading a model costs
about as much as ``from_pretrained`` mapping one big safetensors file. Each blob's header
and size are checked against the manifest on the way (a cheap ``pread``); re-hashing every
byte on every load would triple load time and is ``validate-registry``'s job.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from store.errors import CorruptObjectError, ObjectMissingError, SourceError
from store.manifest import Manifest, TensorEntry
from store.objects import ObjectStore, PutResult
from store.tensorfile import canonical_header

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


def read_model_file(objects: ObjectStore, manifest: Manifest, relpath: str) -> bytes:
    """A (small) file of the model, verified by digest."""
    entry = manifest.files.get(relpath)
    if entry is None:
        raise SourceError(relpath, f"model {manifest.model_id!r} has no {relpath}",
                          "re-import the model from a complete folder")
    return objects.read_bytes(entry.digest, verify=True)


def read_config(objects: ObjectStore, manifest: Manifest) -> dict:
    data = read_model_file(objects, manifest, "config.json")
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
