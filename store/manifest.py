"""Manifests: one immutable record per model version, stored as an object.

A manifest's digest (of its canonical JSON) is the model version's identity. It lists every
file and tensor by digest, the lineage (``parents``), and the ``origin``: where the bytes
came from, precise enough to fetch them again when a blob is found corrupt.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

import msgspec

from store.codec import Record, decode, encode_canonical
from store.errors import ManifestError
from store.objects import ObjectStore
from store.tensors.tensorfile import canonical_header

MANIFEST_FORMAT = 1
Source = Literal["huggingface", "local", "custom", "finetuned"]


class FileEntry(Record):
    digest: str
    size: int


class TensorEntry(Record):
    digest: str
    dtype: str
    shape: list[int]
    nbytes: int

    def blob_size(self, name: str) -> int:
        """Size of the canonical one-tensor blob (header + data)."""
        return len(canonical_header(name, self.dtype, self.shape, self.nbytes)) + self.nbytes


class OriginFile(Record):
    """One file as it was upstream; weight files list the tensors they held.

    ``header`` and ``content`` keep, as ordinary blobs, the upstream bytes the manifest holds
    nowhere else, so that ``export-model`` rebuilds every file byte for byte: a weight
    file's safetensors header (its 8-byte length and JSON, padding included; the data is the
    tensor blobs', in the header's offsets), and the whole checkpoint index (the view
    generates its own)."""

    size: int
    sha256: str | None = None  # the Hub's LFS sha256, when there is one
    git_oid: str | None = None  # the Hub's git blob id, for files not in LFS
    tensors: list[str] = []
    header: FileEntry | None = None
    content: FileEntry | None = None

    def kept(self) -> list[FileEntry]:
        return [e for e in (self.header, self.content) if e is not None]


class HubOrigin(Record, tag="huggingface", tag_field="kind"):
    endpoint: str
    repo_id: str
    revision: str  # what the user asked for: branch, tag or commit
    commit: str  # the commit it resolved to: the pin for re-fetching
    files: dict[str, OriginFile]


class LocalOrigin(Record, tag="local", tag_field="kind", omit_defaults=True):
    path: str  # absolute path of the source folder at import time
    files: dict[str, OriginFile]
    # A snapshot folder of the Hugging Face cache: the repo and commit its path names.
    hub_repo: str | None = None
    hub_commit: str | None = None


class TrainingOrigin(Record, tag="training", tag_field="kind"):
    run: str  # the run's name (the registered output name it trains towards)


Origin = HubOrigin | LocalOrigin | TrainingOrigin


class TrainingInfo(Record):
    step: int
    settings: dict[str, Any] = {}
    optimizer: dict[str, FileEntry] = {}  # optimizer and RNG state, stored like any file
    metrics: dict[str, float] = {}


class Manifest(Record):
    # Required fields first (msgspec's rule); the canonical encoding sorts keys anyway.
    architecture_type: str
    model_id: str
    source: Source
    created_at: str
    params: int
    files: dict[str, FileEntry]
    tensors: dict[str, TensorEntry]
    format: int = MANIFEST_FORMAT
    license: str | None = None
    parents: list[str] = []
    origin: Origin | None = None
    training: TrainingInfo | None = None

    def object_digests(self) -> set[str]:
        """Digests of every object this version needs (its files, tensors, optimizer state)."""
        digests = {f.digest for f in self.files.values()}
        digests.update(t.digest for t in self.tensors.values())
        if self.training is not None:
            digests.update(f.digest for f in self.training.optimizer.values())
        digests.update(e.digest for e in self.origin_blobs())
        return digests

    def origin_blobs(self) -> list[FileEntry]:
        """The upstream bytes kept for a byte-exact export (headers, the index)."""
        files = getattr(self.origin, "files", None) or {}
        return [e for f in files.values() for e in f.kept()]

    def expected_sizes(self) -> dict[str, int]:
        """digest -> size every referenced object must have."""
        sizes = {f.digest: f.size for f in self.files.values()}
        sizes.update((t.digest, t.blob_size(name)) for name, t in self.tensors.items())
        if self.training is not None:
            sizes.update((f.digest, f.size) for f in self.training.optimizer.values())
        sizes.update((e.digest, e.size) for e in self.origin_blobs())
        return sizes

    def same_version(self, other: Manifest) -> bool:
        """Equal in everything but the creation time: the same model version made twice."""
        return msgspec.structs.replace(other, created_at=self.created_at) == self

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def file_bytes(self) -> int:
        return sum(f.size for f in self.files.values())


def now_iso() -> str:
    """UTC timestamp, second precision, as every record of the store writes it."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def encode_manifest(manifest: Manifest) -> bytes:
    return encode_canonical(manifest)


def decode_manifest(digest: str, data: bytes) -> Manifest:
    try:
        manifest = decode(data, Manifest)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ManifestError(digest, str(e)) from None
    if manifest.format != MANIFEST_FORMAT:
        raise ManifestError(digest, f"manifest format {manifest.format} is not {MANIFEST_FORMAT}")
    return manifest


def put_manifest(objects: ObjectStore, manifest: Manifest) -> str:
    return objects.put_bytes(encode_manifest(manifest)).digest


def load_manifest(objects: ObjectStore, digest: str) -> Manifest:
    """Read and verify a manifest (it is small, so it is always re-hashed)."""
    return decode_manifest(digest, objects.read_bytes(digest, verify=True))
