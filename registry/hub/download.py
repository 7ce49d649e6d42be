"""Fetching a Hub repo's files at one pinned commit, each verified against the Hub's own hashes.

The transfer is huggingface_hub's: ``HfApi.model_info`` lists the commit (sizes, LFS sha256,
git blob ids) and ``file_download.http_get`` streams each file, with its retries, ``Range``
resumes, size check, error mapping and progress bars; ``hf_hub_url`` builds the URL, so
``HF_ENDPOINT`` and mirrors work. What this module adds, and why it does not go through
``hf_hub_download``:

- the listing already pins every file to the commit with its size and hashes, so the per-file
  metadata HEAD is redundant (and its retries make a dead Hub take 23 s and a stalled one
  minutes);
- bytes are hashed as they arrive (sha256 for LFS files, the git blob id for the others;
  the client itself checks only the size) on their way to a sink (``registry.hub.sink``): a
  temp file in ``.modelstore/tmp/`` (``fetch_file``: same filesystem as the objects, swept
  by gc after a crash, written through ``store.fs.fsops``), memory (``fetch_bytes``), or a
  consumer that makes something of them while they arrive (``fetch_into``: a weight file
  split into tensor blobs as it downloads, published only once it verified).
  ``hf_hub_download(local_dir=...)`` would also copy a file from the HF cache unverified;
- a connection reset mid-body (``httpx2.ReadError``), which the client does not retry,
  resumes from the bytes already received, like the errors the client does retry.

A file already in the local Hugging Face cache at the same commit is read from there when it
hashes right (the cache is never written). Every failure becomes one ``HubError`` line.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import HfApi, constants, get_token, try_to_load_from_cache
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import hf_hub_url, http_get
from huggingface_hub.utils import build_hf_headers
from huggingface_hub.utils import tqdm as hf_tqdm

from registry.hub.partial import Partial
from registry.hub.sink import HASH_CHUNK, Consumer, FileHasher, Sink, StreamSink
from registry.hub.settings import SharedProgress, TransferSettings
from registry.hub.transfer import HeldBudget, RangedFile, StaleResumeError, open_partial
from registry.hub.errors import (
    HubAuthError,
    HubDownloadError,
    HubError,
    HubGatedRepoError,
    HubIntegrityError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    HubUnsafePathError,
)
from store.errors import ModelStoreError
from store.manifest import OriginFile

# A reset connection is resumed this many times per file (the client retries timeouts and
# protocol errors itself, five times without progress, and never resets).
RESETS_RESUMED = 3
# A listing answered with HTTP 5xx or 429 is asked again after these waits (seconds).
LISTING_RETRY_WAITS = (0.5, 2.0)


DEFAULT_ENDPOINT = "https://huggingface.co"


def configured_endpoint() -> str:
    """``HF_ENDPOINT``, else huggingface_hub's default; read at call time, never cached."""
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class RemoteFile:
    """One file of the pinned commit, as the Hub lists it."""

    path: str
    size: int  # None until known: mirrors list names only (``HubRepo.complete`` asks a HEAD)
    sha256: str | None  # LFS files: the sha256 of the content
    git_oid: str | None  # the git blob id (of the LFS pointer, for LFS files)
    size_only: bool = False  # no hash anywhere, and the user accepted a size-only check

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None

    @property
    def described(self) -> bool:
        """Whether the listing gave what verifying the file needs: its size and a hash."""
        return self.size is not None and bool(self.sha256 or self.git_oid)

    def origin(self) -> OriginFile:
        return OriginFile(size=self.size, sha256=self.sha256, git_oid=None if self.is_lfs else self.git_oid)

    @classmethod
    def from_origin(cls, path: str, origin: OriginFile) -> RemoteFile:
        # No hash recorded: imported with a size-only check; what is fetched again is checked
        # against the store's own digests anyway.
        return cls(path=path, size=origin.size, sha256=origin.sha256, git_oid=origin.git_oid,
                   size_only=not (origin.sha256 or origin.git_oid))


@dataclass
class RepoSnapshot:
    repo_id: str
    revision: str  # what was asked: branch, tag or commit
    commit: str  # what it resolved to; every later request is pinned to it
    files: dict[str, RemoteFile]
    card: dict[str, Any] = field(default_factory=dict)  # model card metadata (license, ...)
    gated: bool | str = False


@dataclass(frozen=True)
class Token:
    value: str | None
    source: str  # where it came from, for error messages

    @classmethod
    def find(cls, explicit: str | None) -> Token:
        """``--token``, else ``HF_TOKEN``, else the token saved by ``hf auth login``."""
        if explicit:
            return cls(explicit.strip(), "--token")
        found = get_token()
        if not found:
            return cls(None, "nowhere")
        from_env = found in (os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN"))
        return cls(found, "HF_TOKEN" if from_env else "the saved login (hf auth login)")


_DRIVE = re.compile(r"^[A-Za-z]:")


def listing_path_problem(path: object) -> str | None:
    """Why a path in a repo listing is hostile, or None.

    Git and the Hub only ever list plain relative POSIX paths, so anything else (absolute,
    a drive letter, a backslash, a '..' or empty component, git's own metadata) means the
    endpoint is broken or hostile: the repo is refused whole, whichever files would be picked.
    """
    if not isinstance(path, str) or not path:
        return "it is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "it contains control characters"
    if path.startswith("/") or _DRIVE.match(path):
        return "it is absolute"
    if "\\" in path:
        return "it contains a backslash"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "it has an empty, '.' or '..' component"
    if any(part.lower() == ".git" for part in parts):
        return "it is inside .git"
    return None


class HubRepo:
    """One model repo on one endpoint, read with one token."""

    def __init__(self, repo_id: str, *, endpoint: str | None = None, token: Token | None = None,
                 settings: TransferSettings | None = None):
        self.repo_id = repo_id
        self.endpoint = (endpoint or configured_endpoint()).rstrip("/")
        self.token = token or Token.find(None)
        self.settings = settings or TransferSettings.configured()
        # Connections in use at once, by every file of this repo's transfers together.
        self.gate = threading.BoundedSemaphore(self.settings.connections)
        self.held = HeldBudget(self.settings.held)
        # One bar for every file (an import sets it); else each fetch gets its own, if asked.
        self.progress: SharedProgress | None = None
        self.cancel = threading.Event()  # set: every transfer stops (Ctrl-C, another file failed)

    # --- listing ---------------------------------------------------------------------------

    def snapshot(self, revision: str | None) -> RepoSnapshot:
        """Resolve ``revision`` (default main) to a commit and list its files with their hashes."""
        asked = revision or "main"
        api = HfApi(endpoint=self.endpoint, token=self.token.value or False)
        for wait in (*LISTING_RETRY_WAITS, None):
            try:
                info = api.model_info(self.repo_id, revision=asked, files_metadata=True,
                                      timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT)
                break
            except Exception as e:  # noqa: BLE001 - every failure becomes one HubError line
                status = getattr(getattr(e, "response", None), "status_code", 0) or 0
                if wait is None or not (status >= 500 or status == 429):
                    raise self.error(e, "the repo listing", revision=asked) from e
                time.sleep(wait)  # a busy or briefly failing Hub: HfApi calls do not retry by themselves
        if not info.sha:
            raise HubDownloadError(self.repo_id, f"the Hub at {self.endpoint} did not say which commit "
                                                 f"{asked!r} of {self.repo_id} is")
        files = {}
        for sibling in info.siblings or []:
            problem = listing_path_problem(sibling.rfilename)
            if problem:
                raise HubUnsafePathError(self.repo_id, f"{self.repo_id}@{info.sha[:12]}", sibling.rfilename,
                                         problem)
            lfs = sibling.lfs or {}
            sha256 = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
            files[sibling.rfilename] = RemoteFile(path=sibling.rfilename, size=sibling.size,  # type: ignore
                                                  sha256=sha256, git_oid=sibling.blob_id)
        card = info.card_data.to_dict() if info.card_data is not None else {}
        return RepoSnapshot(repo_id=self.repo_id, revision=asked, commit=info.sha, files=files,
                            card=card, gated=info.gated or False)

    # --- the local Hugging Face cache ------------------------------------------------------

    def cached(self, commit: str, f: RemoteFile) -> Path | None:
        """The HF cache's copy of ``f`` at ``commit``, if there is one and it hashes right."""
        found = try_to_load_from_cache(self.repo_id, f.path, revision=commit)
        if not isinstance(found, str) or f.size is None:
            return None
        path = Path(found)
        try:
            if path.stat().st_size != f.size:
                return None
            with open(path, "rb") as src:
                hasher = FileHasher(f, self.repo_id)
                while chunk := src.read(HASH_CHUNK):
                    hasher.update(chunk)
        except OSError:
            return None
        return path if hasher.matches() else None

    # --- downloading -----------------------------------------------------------------------

    def fetch_bytes(self, commit: str, f: RemoteFile) -> tuple[bytes, bool]:
        """A small file's verified bytes, and whether they came from the HF cache."""
        cached = self.cached(commit, f)
        if cached is not None:
            return cached.read_bytes(), True
        sink = Sink(self.repo_id, f)
        self._download(commit, f, sink, None)
        return bytes(sink.buffer), False

    @contextmanager
    def fetch_file(self, commit: str, f: RemoteFile, tmp_dir: Path, *, bar: type | None = None,
                   label: str | None = None) -> Iterator[tuple[Path, bool]]:
        """A verified copy of ``f`` on disk, and whether it is the HF cache's.

        A download goes (in parallel ranges, resumable: ``registry.hub.transfer``) to its
        partial in ``tmp_dir``, removed when the block ends; if the download fails, the
        partial is kept for the next try.
        """
        cached = self.cached(commit, f)
        if cached is not None:
            yield cached, True
            return
        partial = self._download_ranged(commit, f, Sink(self.repo_id, f, hash_only=True), tmp_dir, bar, label)
        try:
            yield partial.data, False
        finally:
            partial.discard()

    def fetch_into(self, commit: str, f: RemoteFile, consumer: Consumer, *, bar: type | None = None,
                   label: str | None = None, tmp_dir: Path | None = None) -> None:
        """Download ``f`` into ``consumer`` as its bytes arrive, in file order, never from the HF cache.

        With ``tmp_dir``, in parallel ranges through a resumable partial there
        (``registry.hub.transfer``); else one stream (``http_get``). Returns once every byte
        arrived and hashed right; raises otherwise, and then what the consumer made of the
        bytes must be thrown away: it must make nothing final before.
        """
        if tmp_dir is None:
            self._download(commit, f, StreamSink(self.repo_id, f, consumer), bar, label)
            return
        try:
            self._download_ranged(commit, f, StreamSink(self.repo_id, f, consumer), tmp_dir, bar, label).discard()
        except StaleResumeError:
            # The kept bytes of an earlier run were bad (and are gone): once more, from scratch.
            consumer.restart()
            self._download_ranged(commit, f, StreamSink(self.repo_id, f, consumer), tmp_dir, bar, label).discard()

    def _download_ranged(self, commit: str, f: RemoteFile, sink: Sink, tmp_dir: Path, bar: type | None,
                         label: str | None) -> Partial:
        """``f`` into its partial in ``tmp_dir``, fed in order to ``sink`` and verified by it.

        Returns the partial, complete and verified (the caller discards it). On failure the
        partial is kept for the next run, unless its bytes were wrong (then it is removed,
        and ``StaleResumeError`` says that some of them came from an earlier run)."""
        partial = open_partial(tmp_dir, self.repo_id, commit, f)
        own_bar = SharedProgress(bar, f.size, label or f.path) if self.progress is None and bar else None
        try:
            url = hf_hub_url(self.repo_id, f.path, revision=commit, endpoint=self.endpoint)
            headers = build_hf_headers(token=self.token.value or False, library_name="modelstore")
            RangedFile(repo_id=self.repo_id, url=url, headers=headers, f=f, sink=sink, partial=partial,
                       settings=self.settings, gate=self.gate, held=self.held, progress=own_bar or self.progress,
                       cancel=self.cancel).run()
        except ModelStoreError:
            sink.close()
            partial.close()
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes one HubError line
            sink.close()
            partial.close()
            raise self.error(e, f.path) from e
        except BaseException:
            sink.close()
            partial.close()
            raise
        finally:
            if own_bar is not None:
                own_bar.close()
        sink.close()
        try:
            sink.check()
        except HubIntegrityError:
            partial.discard()
            if partial.resumed:
                raise StaleResumeError(f.path) from None
            raise
        except ModelStoreError:
            partial.close()
            raise
        except Exception as e:  # noqa: BLE001 - what a sink's consumer raised at the last bytes
            partial.close()
            raise self.error(e, f.path) from e
        return partial

    def _download(self, commit: str, f: RemoteFile, sink: Sink, bar: type | None,
                  label: str | None = None) -> None:
        try:
            url = hf_hub_url(self.repo_id, f.path, revision=commit, endpoint=self.endpoint)
            headers = build_hf_headers(token=self.token.value or False, library_name="modelstore")
            resets = 0
            while True:
                try:
                    http_get(url, sink, resume_size=sink.pos, headers=headers, expected_size=f.size,
                             displayed_filename=label or f.path, tqdm_class=bar or _SilentBar)
                    break
                except httpx2.ReadError as e:
                    if resets >= RESETS_RESUMED:
                        raise self.error(e, f.path) from e
                    resets += 1
                except ModelStoreError:
                    raise
                except Exception as e:  # noqa: BLE001 - every failure becomes one HubError line
                    raise self.error(e, f.path) from e
        finally:
            sink.close()
        try:
            sink.check()
        except ModelStoreError:
            raise
        except Exception as e:  # noqa: BLE001 - what a sink's consumer raised at the last bytes
            raise self.error(e, f.path) from e

    # --- errors ----------------------------------------------------------------------------

    def error(self, e: BaseException, what: str, *, revision: str | None = None) -> ModelStoreError:
        """One clear error for anything the client or the network raised."""
        if isinstance(e, ModelStoreError):
            return e
        repo, endpoint, with_token = self.repo_id, self.endpoint, self.token.value is not None
        if isinstance(e, OfflineModeIsEnabled):
            return HubError(repo, f"cannot fetch {what} of {repo}: HF_HUB_OFFLINE is set, so the Hub is "
                                  "not contacted", "unset HF_HUB_OFFLINE (or set it to 0) and run again")
        if isinstance(e, GatedRepoError):
            return HubGatedRepoError(repo, endpoint, with_token)
        if isinstance(e, RepositoryNotFoundError):
            return HubRepoNotFoundError(repo, endpoint, with_token)
        if isinstance(e, RevisionNotFoundError):
            return HubRevisionNotFoundError(repo, revision or "?", endpoint)
        if isinstance(e, HfHubHTTPError):
            status = e.response.status_code if e.response is not None else 0
            if status == 401 and with_token:
                return HubAuthError(repo, endpoint, self.token.source)
            if status in (401, 403):
                return HubGatedRepoError(repo, endpoint, with_token)
            reason = e.response.reason_phrase if e.response is not None else ""
            return HubDownloadError(repo, f"the Hub answered HTTP {status} {reason}".rstrip()
                                    + f" for {what} of {repo}")
        if isinstance(e, httpx2.ConnectError):
            return HubDownloadError(repo, f"cannot connect to the Hub at {endpoint} ({_first_line(e)})")
        if isinstance(e, httpx2.TimeoutException):
            return HubDownloadError(repo, f"the Hub stopped answering while sending {what} of {repo} "
                                          f"(no data for {constants.HF_HUB_DOWNLOAD_TIMEOUT} s)")
        if isinstance(e, httpx2.TransportError):
            return HubDownloadError(repo, f"the connection broke while downloading {what} of {repo} "
                                          f"({type(e).__name__}: {_first_line(e)})")
        if isinstance(e, OSError) and "Consistency check failed" in str(e):
            return HubDownloadError(repo, f"{what} of {repo} arrived truncated: {_first_line(e)}")
        if isinstance(e, OSError):
            return HubDownloadError(repo, f"downloading {what} of {repo} failed: {_first_line(e)}")
        return HubError(repo, f"downloading {what} of {repo} failed: {type(e).__name__}: {_first_line(e)}",
                        "run the command again; set MODELSTORE_DEBUG=1 for details")


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0].rstrip(".")


class _SilentBar(hf_tqdm):
    """No progress bar: what library callers get unless their reporter asks for bars."""

    def __init__(self, *args, **kwargs):
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)
