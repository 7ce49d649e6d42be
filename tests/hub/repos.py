"""In-memory model of Hub repositories: files, commits, branches and tags.

The fake Hub (``tests/hub/server.py``) must answer the questions the real Hub answers, with
the same identifiers, because ``huggingface_hub`` names cache blobs by them and our import
code records them as provenance:

* a regular file is a git blob: its id (tree ``oid``, ``ETag``) is
  ``sha1(b"blob <len>\\0" + content)``, exactly what ``git hash-object`` prints;
* an LFS file (``*.safetensors``, ``*.bin`` and anything over 10 MB, like the Hub's default
  ``.gitattributes``) is stored in git as a pointer file; its tree ``oid`` is the git blob id
  of that pointer, while ``lfs.oid`` / ``X-Linked-Etag`` / ``ETag`` carry the sha256 of the
  real content;
* a commit id is a 40-hex sha1 derived only from the parent, the message and the file ids,
  so a test that builds the same repo twice gets the same sha and can hard-code it.

Nothing here does I/O except reading a source folder in :func:`load_files`.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from math import prod
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin")
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)

FileSource = bytes | str | Path
"""A file's content: raw bytes, UTF-8 text, or a path whose bytes are read."""


def git_blob_sha1(data: bytes) -> str:
    """The id git gives a blob (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer file git stores in place of an LFS object."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def load_files(source: str | Path | Mapping[str, FileSource], *, raw_paths: bool = False) -> dict[str, bytes]:
    """Normalise a folder or a ``{repo path: content}`` mapping to ``{posix path: bytes}``.

    A folder is read like ``upload_folder`` would: ``.git/`` and ``.cache/huggingface/`` (the
    metadata of a ``local_dir`` download) are skipped. ``raw_paths`` keeps mapping keys exactly
    as given (``/etc/x``, ``a/../../b``): what a hostile or broken endpoint could list.
    """
    if isinstance(source, (str, Path)):
        root = Path(source)
        if not root.is_dir():
            raise ValueError(f"{root} is not a directory")
        files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
        return {
            path: p.read_bytes() for path, p in files.items()
            if not path.startswith((".git/", ".cache/huggingface/"))
        }
    files = {}
    for path, content in source.items():
        if isinstance(content, Path):
            content = content.read_bytes()
        elif isinstance(content, str):
            content = content.encode()
        files[path if raw_paths else path.strip("/")] = bytes(content)
    return files


@dataclass(frozen=True)
class HubFile:
    """One file of one commit, with every id the Hub derives from its bytes."""

    path: str
    content: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.content)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def is_lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES) or self.size > LFS_SIZE_THRESHOLD

    @cached_property
    def pointer(self) -> bytes | None:
        return lfs_pointer(self.sha256, self.size) if self.is_lfs else None

    @cached_property
    def blob_id(self) -> str:
        """Git object id: of the pointer for LFS files, of the content otherwise."""
        return git_blob_sha1(self.pointer if self.pointer is not None else self.content)

    @property
    def etag(self) -> str:
        """What the Hub puts in ``ETag``/``X-Linked-Etag``, and the client names its blob by."""
        return self.sha256 if self.is_lfs else self.blob_id

    def lfs_info(self, sha_key: str) -> dict | None:
        """LFS block: ``sha_key`` is ``"oid"`` in tree listings, ``"sha256"`` in model info."""
        if self.pointer is None:
            return None
        return {sha_key: self.sha256, "size": self.size, "pointerSize": len(self.pointer)}


@dataclass(frozen=True)
class Commit:
    sha: str
    files: Mapping[str, HubFile]
    parent: str | None
    message: str
    date: datetime

    @property
    def iso_date(self) -> str:
        return self.date.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def directories(self) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in self.files for i in range(1, p.count("/") + 1)}

    def tree(self, path: str = "", recursive: bool = False) -> list[dict] | None:
        """``/tree`` entries under ``path`` (None if ``path`` is not a folder), sorted by path."""
        path = path.strip("/")
        dirs = self.directories()
        if path and path not in dirs:
            return None
        prefix = f"{path}/" if path else ""

        def wanted(p: str) -> bool:
            return p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])

        entries = [
            {"type": "directory", "oid": self._dir_oid(d), "size": 0, "path": d} for d in dirs if wanted(d)
        ]
        for f in self.files.values():
            if wanted(f.path):
                entry = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path}
                if f.is_lfs:
                    entry["lfs"] = f.lfs_info("oid")
                entries.append(entry)
        return sorted(entries, key=lambda e: e["path"])

    def _dir_oid(self, directory: str) -> str:
        inner = sorted(f"{p}:{f.blob_id}" for p, f in self.files.items() if p.startswith(directory + "/"))
        return hashlib.sha1("\n".join(inner).encode()).hexdigest()

    def safetensors_summary(self) -> dict | None:
        """``{"parameters": {dtype: count}, "total": n}`` like the Hub's ``safetensors`` field."""
        params: dict[str, int] = {}
        for f in self.files.values():
            if f.path.endswith(".safetensors"):
                try:
                    (n,) = struct.unpack("<Q", f.content[:8])
                    header = json.loads(f.content[8 : 8 + n])
                except (struct.error, ValueError):
                    continue
                for name, t in header.items():
                    if name != "__metadata__":
                        params[t["dtype"]] = params.get(t["dtype"], 0) + prod(t["shape"])
        return {"parameters": params, "total": sum(params.values())} if params else None

    def config_summary(self) -> dict | None:
        """The subset of ``config.json`` the Hub exposes as ``config`` in model info."""
        f = self.files.get("config.json")
        try:
            config = json.loads(f.content) if f else None
        except ValueError:
            return None
        if not isinstance(config, dict):
            return None
        return {k: config[k] for k in ("architectures", "model_type") if k in config}


def make_commit(files: Mapping[str, bytes], parent: Commit | None, message: str) -> Commit:
    """Build a commit whose sha depends only on parent, message and file ids (deterministic)."""
    hub_files = {p: HubFile(p, c) for p, c in sorted(files.items())}
    listing = "\n".join(f"{p} {f.blob_id}" for p, f in hub_files.items())
    parent_sha = parent.sha if parent else ""
    sha = hashlib.sha1(f"parent {parent_sha}\nmessage {message}\n{listing}".encode()).hexdigest()
    date = (parent.date + timedelta(minutes=1)) if parent else _EPOCH
    return Commit(sha=sha, files=hub_files, parent=parent.sha if parent else None, message=message, date=date)


@dataclass
class Repo:
    """A model repo: commits plus the mutable names (branches, tags) that point into them."""

    repo_id: str
    private: bool = False
    gated: bool | str = False
    tokens: set[str] = field(default_factory=set)
    card_data: dict = field(default_factory=dict)
    model_tags: list[str] = field(default_factory=list)
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gated is True:
            self.gated = "auto"

    def resolve(self, revision: str) -> Commit | None:
        """Branch, tag, ``refs/heads/x``, ``refs/tags/x`` or full commit sha -> commit."""
        if revision.startswith("refs/heads/"):
            sha = self.branches.get(revision[len("refs/heads/"):])
        elif revision.startswith("refs/tags/"):
            sha = self.tags.get(revision[len("refs/tags/"):])
        else:
            sha = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(sha)

    def commit(
        self,
        files: Mapping[str, bytes],
        *,
        branch: str,
        message: str,
        base: str | None = None,
        delete: Iterable[str] = (),
        replace: bool = False,
    ) -> Commit:
        """Commit on top of ``base`` (default: ``branch``'s head) and move ``branch`` to it.

        ``files`` are added or overwritten, ``delete`` removed; ``replace`` starts from an
        empty tree instead of the parent's.
        """
        parent = self.resolve(base or branch) if (base or branch in self.branches) else None
        if base and parent is None:
            raise ValueError(f"unknown base revision {base!r}")
        tree = {} if (replace or parent is None) else {p: f.content for p, f in parent.files.items()}
        tree.update(files)
        for path in delete:
            tree.pop(path, None)
        new = make_commit(tree, parent, message)
        self.commits[new.sha] = new
        self.branches[branch] = new.sha
        return new

    def refs(self) -> dict:
        """Body of ``GET /api/models/{id}/refs``."""

        def refs(names: dict[str, str], kind: str) -> list[dict]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": s} for n, s in sorted(names.items())]

        return {"branches": refs(self.branches, "heads"), "converts": [], "tags": refs(self.tags, "tags"),
                "pullRequests": []}

    def info(self, commit: Commit, *, blobs: bool) -> dict:
        """Body of ``GET /api/models/{id}[/revision/{rev}]`` (before ``expand`` filtering)."""
        siblings = []
        for f in commit.files.values():
            sibling: dict = {"rfilename": f.path}
            if blobs:
                sibling.update(size=f.size, blobId=f.blob_id)
                if f.is_lfs:
                    sibling["lfs"] = f.lfs_info("sha256")
            siblings.append(sibling)
        first = min(self.commits.values(), key=lambda c: c.date)
        info = {
            "_id": hashlib.sha1(self.repo_id.encode()).hexdigest()[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/")[0] if "/" in self.repo_id else None,
            "sha": commit.sha,
            "lastModified": commit.iso_date,
            "createdAt": first.iso_date,
            "private": self.private,
            "gated": self.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(self.model_tags),
            "siblings": siblings,
            "spaces": [],
            "usedStorage": sum(f.size for f in commit.files.values()),
        }
        if self.card_data:
            info["cardData"] = dict(self.card_data)
        if (config := commit.config_summary()) is not None:
            info["config"] = config
            info["library_name"] = "transformers"
        if (safetensors := commit.safetensors_summary()) is not None:
            info["safetensors"] = safetensors
        return info
