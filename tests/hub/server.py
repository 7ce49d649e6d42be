"""A Hugging Face Hub look-alike on 127.0.0.1, for tests that run the real client.

Why: ``import-model`` must be tested against the actual ``huggingface_hub`` download code
(metadata HEADs, ETag-named cache blobs, LFS redirects, resumes with ``Range``, error mapping
from ``X-Error-Code``), not against mocks of it; and the real Hub cannot be reached from CI.
This server speaks the subset of the Hub protocol that ``huggingface_hub`` 2.4.0 uses for
``snapshot_download``, ``hf_hub_download``, ``HfApi.model_info/repo_info/list_repo_tree/
list_repo_refs/file_exists/whoami`` and ``get_hf_file_metadata``. Stdlib only.

Endpoints (``{rev}`` is a branch, a tag, ``refs/heads|tags/x`` or a 40-hex sha, URL-quoted)::

    GET  /api/models/{repo}[/revision/{rev}]  ?blobs=true&expand=...   model info (default: main)
    GET  /api/models/{repo}/tree/{rev}[/{path}] ?recursive&expand&cursor  listing, Link-paginated
    GET  /api/models/{repo}/refs                                        branches and tags
    GET  /api/whoami-v2
    HEAD|GET /{repo}/resolve/{rev}/{path}     ETag, X-Repo-Commit, Content-Length, Accept-Ranges,
                                              Range -> 206; LFS files also X-Linked-Etag/-Size and,
                                              by default, a 302 to the "CDN" listener below
    HEAD|GET {cdn}/lfs/{sha256}?path=...      the LFS bytes (another port = another origin, so
                                              the client drops Authorization, as with the real CDN)

No response ever carries ``X-Xet-Hash``/``Link: rel=xet-auth`` and no tree entry a ``xetHash``:
that is what makes ``huggingface_hub`` pick Xet, so every download here is plain HTTP.

Errors mirror the Hub: unknown/private repo -> 401 (no token) or 404 (token) with
``X-Error-Code: RepoNotFound``; gated repo files -> 401 (no token) / 403 (token without access)
with ``GatedRepo``; unknown token -> 401 ``X-Error-Message: Invalid credentials in
Authorization header``; bad revision -> 404 ``RevisionNotFound``; missing file -> 404
``EntryNotFound`` (with ``X-Repo-Commit``). Info and tree of a gated repo stay public.

Pointing the client here: see ``tests/hub/fixtures.py`` (``HF_ENDPOINT`` is read by
``huggingface_hub.constants`` at import time, so setting the variable later is not enough).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlencode

from .faults import FaultPlan, RequestLog, RequestRecord
from .handler import Handler
from .repos import FileSource, HubFile, Repo, load_files

__all__ = ["HubServer"]


class HubServer:
    """The fake Hub. ``with HubServer() as hub: ...`` or ``start()`` / ``stop()``.

    Content: :meth:`add_repo`, :meth:`add_commit`, :meth:`add_branch`, :meth:`add_tag`,
    :meth:`add_token`; ``repos[repo_id]`` can be edited in place (``gated``, ``private``...).
    Observation: ``requests`` (a :class:`~tests.hub.faults.RequestLog`), ``errors`` (bugs of
    this server). Failure injection: ``faults.add(kind, ...)`` (see :class:`~tests.hub.faults.Fault`).

    ``lfs_redirect``: answer LFS ``/resolve`` requests with a 302 to the CDN listener, as the
    Hub does (``False``: serve LFS bytes directly, still with the ``X-Linked-*`` headers).
    ``tree_page_size``: entries per ``/tree`` page (the Hub uses 1000); lower it to test paging.
    ``mirror``: behave like a mirror or caching proxy that lists names only: the repo info
    and ``/tree`` give file names without ``size``, ``lfs`` or ``blobId``; metadata comes only
    from a HEAD of ``/resolve`` (redirecting LFS files to the CDN-like path as set above).
    ``unlisted``: paths left out of every listing, though ``/resolve`` serves them.
    ``rate_limit``/``response_delay``: the CDN mode (see :meth:`cdn_mode`); ``body_bytes``
    counts every body byte sent, file or not.
    ``hash_headers``: ``False`` answers ``/resolve`` with an ETag that is no hash and no
    ``X-Linked-Etag`` (a proxy that rewrites them).
    All can also be changed while the server runs. Ports are ephemeral: read ``endpoint``
    after ``start()``; a restarted server gets new ones.
    """

    def __init__(self, *, lfs_redirect: bool = True, tree_page_size: int = 1000) -> None:
        self.lfs_redirect = lfs_redirect
        self.tree_page_size = tree_page_size
        self.mirror = False
        self.unlisted: set[str] = set()
        self.hash_headers = True
        # CDN mode: each connection sends at most ``rate_limit`` bytes/s of a body (None: no
        # cap), and every response waits ``response_delay`` seconds before its status line.
        self.rate_limit: float | None = None
        self.response_delay = 0.0
        self._body_bytes = 0
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, str] = {}  # token -> user name
        self.requests = RequestLog()
        self.faults = FaultPlan()
        self.errors: list[str] = []  # tracebacks of bugs in this server, never client errors
        self._blobs: dict[str, HubFile] = {}  # sha256 -> LFS file, what the CDN serves
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._in_flight = 0
        self._listeners: dict[str, _Listener] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> HubServer:
        if not self._listeners:
            self._stopping.clear()
            for role in ("hub", "cdn"):
                listener = _Listener(("127.0.0.1", 0), Handler)
                listener.hub, listener.role = self, role
                threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.05},
                                 name=f"fake-hub-{role}", daemon=True).start()
                self._listeners[role] = listener
        return self

    def stop(self) -> None:
        """Stop listening; stalled responses are cut short, so ``requests`` is then complete."""
        self._stopping.set()
        for listener in self._listeners.values():
            listener.shutdown()
            listener.server_close()
        self._listeners.clear()
        self.wait_idle(timeout=5)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being served, e.g. for a stalled one to reach its end."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the value for ``HF_ENDPOINT``."""
        return self._url("hub")

    @property
    def cdn_endpoint(self) -> str:
        return self._url("cdn")

    def _url(self, role: str) -> str:
        if role not in self._listeners:
            raise RuntimeError("HubServer is not started")
        return "http://127.0.0.1:%d" % self._listeners[role].server_address[1]

    # -- content -----------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: str | Path | Mapping[str, FileSource],
        *,
        revision: str = "main",
        tags: Iterable[str] = (),
        gated: bool | str = False,
        private: bool = False,
        token: str | Iterable[str] | None = None,
        card_license: str | None = None,
        card_data: Mapping | None = None,
        model_tags: Iterable[str] = (),
        message: str = "Initial commit",
        raw_paths: bool = False,
    ) -> str:
        """Create a repo whose first commit holds ``files`` (a folder or ``{path: content}``).

        ``revision`` is the branch created; ``tags`` are git tags on that commit; ``token``
        is the token(s) granted access to a private or gated repo (each becomes a valid
        token for the whole server); ``raw_paths`` lists the paths exactly as given, hostile ones
        included (see :func:`~tests.hub.repos.load_files`). Returns the commit sha (deterministic).
        """
        tokens = {token} if isinstance(token, str) else set(token or ())
        card = {**(card_data or {}), **({"license": card_license} if card_license else {})}
        with self._lock:
            if repo_id in self.repos:
                raise ValueError(f"repo {repo_id!r} already exists")
            self.repos[repo_id] = Repo(repo_id, private=private, gated=gated, tokens=tokens,
                                       card_data=card, model_tags=list(model_tags))
            for t in tokens:
                self.tokens.setdefault(t, "tester")
            return self.add_commit(repo_id, files, branch=revision, tags=tags, message=message,
                                   raw_paths=raw_paths)

    def add_commit(
        self,
        repo_id: str,
        files: str | Path | Mapping[str, FileSource],
        *,
        branch: str = "main",
        base: str | None = None,
        tags: Iterable[str] = (),
        message: str = "Update files",
        delete: Iterable[str] = (),
        replace: bool = False,
        raw_paths: bool = False,
    ) -> str:
        """Commit ``files`` on top of ``base`` (default: ``branch``) and move ``branch`` there."""
        with self._lock:
            repo = self.repos[repo_id]
            commit = repo.commit(load_files(files, raw_paths=raw_paths), branch=branch, base=base,
                                 message=message, delete=delete, replace=replace)
            self._blobs.update({f.sha256: f for f in commit.files.values() if f.is_lfs})
            for tag in tags:
                repo.tags[tag] = commit.sha
            return commit.sha

    def add_branch(self, repo_id: str, name: str, revision: str) -> str:
        """Create or move branch ``name`` to ``revision``; returns the commit sha."""
        return self._set_ref(repo_id, "branches", name, revision)

    def add_tag(self, repo_id: str, name: str, revision: str) -> str:
        return self._set_ref(repo_id, "tags", name, revision)

    def add_token(self, token: str, user: str = "tester") -> None:
        """Make ``token`` valid (for ``whoami``) without granting it any private/gated repo."""
        with self._lock:
            self.tokens[token] = user

    def _set_ref(self, repo_id: str, kind: str, name: str, revision: str) -> str:
        with self._lock:
            repo = self.repos[repo_id]
            commit = repo.resolve(revision)
            if commit is None:
                raise ValueError(f"unknown revision {revision!r} in {repo_id}")
            getattr(repo, kind)[name] = commit.sha
            return commit.sha

    def file_url(self, repo_id: str, path: str, revision: str = "main") -> str:
        return f"{self.endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"

    def cdn_mode(self, rate: float | None, delay: float = 0.0) -> None:
        """Serve like a far CDN: ``rate`` bytes/s per connection (None: no cap), ``delay``
        seconds before every response."""
        self.rate_limit, self.response_delay = rate, delay

    @property
    def body_bytes(self) -> int:
        """Body bytes sent so far, by every listener (a counter, cheaper than ``requests``)."""
        with self._lock:
            return self._body_bytes

    def count_body(self, n: int) -> None:
        with self._lock:
            self._body_bytes += n

    # -- hooks for the handler --------------------------------------------------------------

    def cdn_url(self, f: HubFile) -> str:
        """A "signed" CDN URL for an LFS file, on the other listener (another origin)."""
        return f"{self.cdn_endpoint}/lfs/{f.sha256}?{urlencode({'path': f.path, 'X-Amz-Expires': 3600})}"

    def lfs_blob(self, sha256: str) -> HubFile | None:
        with self._lock:
            return self._blobs.get(sha256)

    def stall(self, seconds: float) -> None:
        """Sleep for an injected stall, or less if the server is stopped meanwhile."""
        self._stopping.wait(seconds)

    def request_started(self, record: RequestRecord) -> None:
        self.requests.append(record)
        with self._idle:
            self._in_flight += 1

    def request_finished(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()


class _Listener(ThreadingHTTPServer):
    daemon_threads = True  # a stalled handler must never keep the test process alive
    block_on_close = False
    hub: HubServer
    role: str  # "hub" or "cdn"

    def handle_error(self, request, client_address) -> None:
        pass  # client hang-ups are expected (faults, timeouts); server bugs go to hub.errors
