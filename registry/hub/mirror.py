"""Hub mirrors and caching proxies that list file names only, and files a listing leaves out.

Where the repo listing gives no size or hash for a file, they come the way
``snapshot_download`` gets them: a HEAD of the file's resolve URL at the pinned commit
(``get_hf_file_metadata``: ``X-Linked-Size``/``Content-Length``, ``X-Linked-Etag``/``ETag`` =
the LFS sha256 or the git blob id, ``X-Repo-Commit``), several at once. A file still without
a hash is refused, unless the user accepted a size-only check (``--trust-size-only``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from huggingface_hub import constants
from huggingface_hub.file_download import hf_hub_url

from registry.hub.download import HubRepo, RemoteFile, RepoSnapshot, listing_path_problem
from registry.hub.errors import HubDownloadError, HubUnverifiableError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_OID = re.compile(r"[0-9a-f]{40}")
HEAD_WORKERS = 8  # as snapshot_download's default of files at once


def complete(hub: HubRepo, snap: RepoSnapshot, paths: Iterable[str], *, trust_size_only: bool = False) -> None:
    """Give every file of ``paths`` its size and hash, as ``snapshot_download`` does where a
    mirror or caching proxy lists names only: a HEAD of the file's resolve URL at the pinned
    commit (``get_hf_file_metadata``: ``X-Linked-Size``/``Content-Length``,
    ``X-Linked-Etag``/``ETag`` = the LFS sha256 or the git blob id, ``X-Repo-Commit``),
    several at once. A file still without a hash is refused, unless ``trust_size_only``."""
    todo = [p for p in dict.fromkeys(paths) if p in snap.files and not snap.files[p].described]
    for path, remote in zip(todo, _heads(hub, snap, todo)):
        if remote is None:
            raise HubDownloadError(hub.repo_id, f"{hub.repo_id}@{snap.commit[:12]}/{path} is listed but "
                                                 f"{hub.endpoint} answers 404 for it")
        if not remote.described:
            if not trust_size_only or remote.size is None:
                raise HubUnverifiableError(hub.repo_id, hub.endpoint, path,
                                           "size" if remote.size is None else "sha256 or git blob id")
            remote = RemoteFile(path, remote.size, None, None, size_only=True)
        snap.files[path] = remote

def find_unlisted(hub: HubRepo, snap: RepoSnapshot, paths: Iterable[str], *, trust_size_only: bool = False) -> list[str]:
    """The files of ``paths`` the listing left out that a HEAD finds at the pinned commit
    (added to ``snap``): a mirror's listing can miss a shard that it serves."""
    todo = [p for p in dict.fromkeys(paths) if p not in snap.files and listing_path_problem(p) is None]
    found = []
    for path, remote in zip(todo, _heads(hub, snap, todo)):
        if remote is not None:
            snap.files[path] = RemoteFile(path, remote.size, remote.sha256, remote.git_oid)
            found.append(path)
    complete(hub, snap, found, trust_size_only=trust_size_only)
    return found

def _heads(hub: HubRepo, snap: RepoSnapshot, paths: list[str]) -> list[RemoteFile | None]:
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=min(HEAD_WORKERS, len(paths))) as pool:
        return list(pool.map(lambda p: _head(hub, snap.commit, p), paths))

def _head(hub: HubRepo, commit: str, path: str) -> RemoteFile | None:
    from huggingface_hub import get_hf_file_metadata
    from huggingface_hub.errors import EntryNotFoundError

    url = hf_hub_url(hub.repo_id, path, revision=commit, endpoint=hub.endpoint)
    try:
        meta = get_hf_file_metadata(url, token=hub.token.value or False,
                                    timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except EntryNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - every failure becomes one HubError line
        if getattr(getattr(e, "response", None), "status_code", 0) == 404:
            return None
        raise hub.error(e, f"the metadata of {path}", revision=commit) from e
    if meta.commit_hash and meta.commit_hash != commit:
        raise HubDownloadError(hub.repo_id, f"{hub.endpoint} answered for {path} from commit "
                                             f"{meta.commit_hash[:12]}, not the pinned {commit[:12]}")
    etag = (meta.etag or "").lower()
    sha256 = etag if _SHA256.fullmatch(etag) else None
    git_oid = etag if _GIT_OID.fullmatch(etag) else None
    return RemoteFile(path, meta.size, sha256, git_oid)

