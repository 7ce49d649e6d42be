"""The on-disk format of ``.modelstore/``: its version, where an object lives, temp files.

This module is the only one that knows how a digest becomes a path, what the FORMAT marker
says, and where in-flight writes go. Everything else asks it.

    .modelstore/
      FORMAT           {"format": 1, "hash": "blake3"}
      objects/ab/cdef  immutable blobs named by the BLAKE3 hex digest of their bytes
      tmp/             in-flight writes, one unique file per writer
      quarantine/      corrupt objects moved aside by validate-registry --fix
      sources/         what was learnt about source folders read by imports (a hint only:
                       store.sourcecache), one record per folder
      lock             advisory lock for writers
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import msgspec

from store.fs import fsops
from store.codec import Record, decode, encode_canonical
from store.digest import is_digest
from store.errors import StoreFormatError, UnsafePathError

FORMAT_VERSION = 1
HASH_NAME = "blake3"
STORE_DIRNAME = ".modelstore"
OBJECT_MODE = 0o444
# objects/ab/cdef...: 256 fan-out directories keep any one directory small.
FANOUT = 2
# A store being created: fsops.make_temp_dir(root, STORE_DIRNAME) names it after its process.
_STAGING = re.compile(re.escape(STORE_DIRNAME) + r"-(\d+)-[0-9a-f]+\.tmp")


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
        self.sources = self.store / "sources"
        self.lock_file = self.store / "lock"
        self.format_file = self.store / "FORMAT"

    def object_path(self, digest: str) -> Path:
        # One string, parsed once: this runs for every blob of every model a command touches.
        return Path(f"{self.objects}/{digest[:FANOUT]}/{digest[FANOUT:]}")

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

    def source_record_path(self, folder_digest: str) -> Path:
        """Where ``store.sourcecache`` keeps its record of the source folder with that digest."""
        return self.sources / f"{folder_digest}.json"

    def new_temp(self, prefix: str) -> tuple[int, Path]:
        return fsops.create_temp(self.tmp, prefix)

    # --- the FORMAT marker ---------------------------------------------------------------

    def exists(self) -> bool:
        return self.format_file.exists() or self.store.is_dir()

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

    def require_no_links(self) -> None:
        """Refuse a store whose own folders (or lock file) are links, or folders that are files.

        A link planted there would send writes and deletes outside the store, so commands that
        change things check this before they start, rather than fail halfway.
        """
        for path in (self.store, self.objects, self.tmp, self.quarantine, self.sources):
            fsops.require_real_dir(path)
        if os.path.islink(self.lock_file):
            raise UnsafePathError(self.lock_file, f"is a symbolic link to {os.readlink(self.lock_file)}")

    def create(self) -> None:
        """Create the store (idempotent); an existing store is only checked.

        A new store is assembled in a temp folder beside it (FORMAT and the subfolders) and
        renamed into place, so ``.modelstore`` never exists without its FORMAT: processes
        creating the store at once, or one that crashed half-way, leave it absent or whole,
        never in the state ``check_format`` refuses as foreign or damaged.
        """
        self.require_no_links()
        if not self.format_file.exists():
            self._create_new()
        self.check_format()

    def _create_new(self) -> None:
        staging: Path | None = fsops.make_temp_dir(self.root, STORE_DIRNAME)
        try:
            for sub in (self.objects, self.tmp, self.quarantine):
                fsops.mkdirs(staging / sub.name)
            marker = encode_canonical(FormatMarker(format=FORMAT_VERSION, hash=HASH_NAME))
            fsops.atomic_write(staging / self.format_file.name, marker + b"\n", staging / self.tmp.name)
            try:
                fsops.rename(staging, self.store)  # replaces nothing but an empty folder
                staging = None
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                # Another process created the store first; check_format judges theirs.
        finally:
            if staging is not None:
                fsops.rmtree(staging)
        self._sweep_dead_staging()

    def _sweep_dead_staging(self) -> None:
        """Remove staging folders of creations that crashed (their process is gone)."""
        for entry in os.scandir(self.root):
            match = _STAGING.fullmatch(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and not _alive(int(match.group(1))):
                fsops.rmtree(Path(entry.path))
        fsops.fsync_dir(self.root)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
