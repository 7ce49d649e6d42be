"""The on-disk format of ``.modelstore/``: its version, where an object lives, temp files.

This module is the only one that knows how a digest becomes a path, what the FORMAT marker
says, and where in-flight writes go. Everything else asks it.

    .modelstore/
      FORMAT           {"format": 1, "hash": "blake3"}
      objects/ab/cdef  immutable blobs named by the BLAKE3 hex digest of their bytes
      tmp/             in-flight writes, one unique file per writer
      quarantine/      corrupt objects moved aside by validate-registry --fix
      lock             advisory lock for writers
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from store import fsops
from store.codec import Record, decode, encode_canonical
from store.digest import is_digest
from store.errors import StoreFormatError

FORMAT_VERSION = 1
HASH_NAME = "blake3"
STORE_DIRNAME = ".modelstore"
OBJECT_MODE = 0o444
# objects/ab/cdef...: 256 fan-out directories keep any one directory small.
FANOUT = 2


class FormatMarker(Record):
    format: int
    hash: str


class Layout:
    """Paths of one store, rooted at ``root/.modelstore``."""

    def __init__(self, root: Path | str):
        self.root = Path(root).absolute()
        self.store = self.root / STORE_DIRNAME
        self.objects = self.store / "objects"
        self.tmp = self.store / "tmp"
        self.quarantine = self.store / "quarantine"
        self.lock_file = self.store / "lock"
        self.format_file = self.store / "FORMAT"

    def object_path(self, digest: str) -> Path:
        return self.objects / digest[:FANOUT] / digest[FANOUT:]

    def object_relpath(self, digest: str) -> str:
        """The object's path relative to ``root`` (what views' symlinks are built from)."""
        return f"{STORE_DIRNAME}/objects/{digest[:FANOUT]}/{digest[FANOUT:]}"

    def digest_of(self, path: Path) -> str | None:
        """The digest an object path stands for, or None if it is not an object path."""
        try:
            rel = Path(path).relative_to(self.objects)
        except ValueError:
            return None
        digest = "".join(rel.parts)
        ok = len(rel.parts) == 2 and len(rel.parts[0]) == FANOUT and is_digest(digest)
        return digest if ok else None

    def iter_object_paths(self):
        """Yield (digest, path) for every file under objects/ that has an object's name."""
        if not self.objects.is_dir():
            return
        for fan in sorted(os.scandir(self.objects), key=lambda e: e.name):
            if len(fan.name) != FANOUT or not fan.is_dir(follow_symlinks=False):
                continue
            for entry in sorted(os.scandir(fan.path), key=lambda e: e.name):
                digest = fan.name + entry.name
                if is_digest(digest):
                    yield digest, Path(entry.path)

    def new_temp(self, prefix: str) -> tuple[int, Path]:
        return fsops.create_temp(self.tmp, prefix)

    # --- the FORMAT marker ---------------------------------------------------------------

    def exists(self) -> bool:
        """A store is here (with a FORMAT marker, or a damaged one without); a creation a crash
        cut short before its marker holds nothing, and counts as no store: ``create`` ends it."""
        return self.format_file.exists() or (self.store.is_dir() and not self._unfinished_creation())

    def _unfinished_creation(self) -> bool:
        """``.modelstore`` holds only what ``create`` makes before FORMAT: empty folders, the
        lock file, and FORMAT's own temp file."""
        try:
            entries = set(os.listdir(self.store))
            if not entries <= {"objects", "tmp", "quarantine", self.lock_file.name}:
                return False
            if any(os.listdir(self.store / name) for name in ("objects", "quarantine") if name in entries):
                return False
            return "tmp" not in entries or all(name.startswith(f"{self.format_file.name}-")
                                               for name in os.listdir(self.tmp))
        except OSError:  # not a folder, unreadable: not something create() left
            return False

    def check_format(self) -> None:
        """Refuse a store this code cannot read, naming both format versions."""
        try:
            data = self.format_file.read_bytes()
        except FileNotFoundError:
            raise StoreFormatError(
                self.format_file,
                f"{self.store} has no FORMAT marker",
                "it was not created by modelstore, or it is damaged; "
                "move it aside to start a new store",
            ) from None
        try:
            marker = decode(data, FormatMarker)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise StoreFormatError(
                self.format_file, f"{self.format_file} is unreadable ({e})",
                f'it should read {{"format": {FORMAT_VERSION}, "hash": "{HASH_NAME}"}}',
            ) from None
        if marker.format != FORMAT_VERSION:
            newer = marker.format > FORMAT_VERSION
            raise StoreFormatError(
                self.format_file,
                f"store format {marker.format} is not supported: "
                f"this modelstore reads format {FORMAT_VERSION}",
                "upgrade modelstore to open this store" if newer
                else "this store predates format 1; re-import its models into a new store",
            )
        if marker.hash != HASH_NAME:
            raise StoreFormatError(
                self.format_file,
                f"store hash {marker.hash!r} is not supported: this modelstore uses {HASH_NAME!r}",
                "open this store with the tool that created it",
            )

    def create(self) -> None:
        """Create the store (idempotent); an existing store is only checked."""
        for path in (self.store, self.objects, self.tmp, self.quarantine):
            fsops.require_real_dir(path)
        if self.format_file.exists():
            self.check_format()
            return
        # The marker is written last: until it exists, the store holds nothing (see exists()).
        for path in (self.objects, self.tmp, self.quarantine):
            fsops.mkdirs(path)
        marker = encode_canonical(FormatMarker(format=FORMAT_VERSION, hash=HASH_NAME))
        fsops.atomic_write(self.format_file, marker + b"\n", self.tmp)
        fsops.fsync_dir(self.root)
