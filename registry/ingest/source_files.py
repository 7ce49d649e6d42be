"""The files of a local source folder, as an import may read them: plain files, nothing else.

``scan_folder`` lists every file of the folder and says what is wrong with the ones that are
not plain files: a link that dangles or loops, a link that leaves the folder, a FIFO, a
device or a socket. The import refuses such a file, in one line naming it, when it is one it
would read (config, tokenizer, weights...); any other is skipped with the reason. Nothing is
ever read from a FIFO or a device (a read could block forever or never end).

A link that leaves the folder is refused unless the caller allows it
(``follow_links``), with one exception: a snapshot folder of the Hugging Face cache
(``.../models--ORG--NAME/snapshots/REVISION/``) is made of links into the ``blobs/`` folder
of the same cache repo, and imports as it is; its repo and commit come from its path.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

_CACHE_REPO = re.compile(r"^models--(?P<org>[^/]+?)--(?P<name>[^/]+)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class SourceListing:
    files: list[str] = field(default_factory=list)  # readable plain files, relative paths
    problems: dict[str, str] = field(default_factory=dict)  # relative path -> what is wrong with it
    hub_repo: str | None = None  # set for a snapshot folder of the Hugging Face cache
    hub_commit: str | None = None

    @property
    def paths(self) -> list[str]:
        return self.files + list(self.problems)


def hf_cache_snapshot(folder: Path) -> tuple[Path, str, str | None] | None:
    """(the cache repo's blobs/ folder, repo id, commit) when ``folder`` is an HF cache snapshot."""
    parts = folder.parts
    if len(parts) < 3 or parts[-2] != "snapshots":
        return None
    m = _CACHE_REPO.match(parts[-3])
    if m is None:
        return None
    commit = parts[-1] if _COMMIT.match(parts[-1]) else None
    return folder.parent.parent / "blobs", f"{m['org']}/{m['name']}", commit


def scan_folder(folder: Path, *, follow_links: bool = False) -> SourceListing:
    """Every file under ``folder`` (hidden folders skipped), sorted into plain files and problems."""
    folder = folder.absolute()
    listing = SourceListing()
    real = folder.resolve()
    cache = hf_cache_snapshot(folder)
    if cache is not None:
        listing.hub_repo, listing.hub_commit = cache[1], cache[2]
    allowed = [real] + ([cache[0].resolve()] if cache is not None else [])
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(folder)
        for filename in filenames:
            relpath = str(rel / filename) if rel.parts else filename
            problem = _problem(Path(dirpath) / filename, allowed, follow_links)
            if problem is None:
                listing.files.append(relpath)
            else:
                listing.problems[relpath] = problem
    return listing


def _problem(path: Path, allowed: list[Path], follow_links: bool) -> str | None:
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        try:
            resolved = path.resolve(strict=True)
        except FileNotFoundError:
            return f"is a link to {target}, which does not exist"
        except (RuntimeError, OSError):
            return "is a link that loops"
        if not follow_links and not any(resolved.is_relative_to(root) for root in allowed):
            return f"is a link to {resolved}, outside the folder"
        try:
            st = os.stat(resolved)
        except OSError as e:
            return f"is a link to {resolved}, which cannot be read ({e.strerror})"
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISFIFO(st.st_mode):
        return "is a FIFO (a named pipe), not a file"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return "is a device, not a file"
    if stat.S_ISSOCK(st.st_mode):
        return "is a socket, not a file"
    return "is not a plain file"
