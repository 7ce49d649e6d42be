"""The transfer engine: one Hub file over several connections in parallel byte ranges,
verified in order, resumable after a kill.

How one file is fetched (``RangedFile.run``):

1. its partial (``registry.hub.partial``) is opened: a sparse file under ``.modelstore/tmp/``
   and a record of the byte ranges already written, from an earlier run of the same import
   if there was one (same repo, path, size and sha256/git blob id);
2. range requests go to the resolve URL at the pinned commit, following its redirect (an LFS
   file's CDN URL; the session drops ``Authorization`` for another origin); once a redirect
   was seen, later ranges go straight to its target (asked again through the resolve URL if
   it refuses them: an expired signature). Xet-backed files are served the same way: the
   resolve URL answers them over plain HTTP;
3. what is still missing is cut into ranges (``range_size``, 32 MB by default) that up to
   ``connections`` workers fetch with ``Range`` requests, each writing its bytes at their
   offset (``pwrite``). Workers are added one at a time, while each raises the file's rate
   (a link that limits each connection gets them all; a machine that is itself the limit
   keeps its CPU for hashing). The connections are shared by every file of the import (one
   semaphore per ``HubRepo``), so several files in parallel never use more;
4. the calling thread feeds the received prefix, in file order, to the sink: chunks a
   connection has just written to the partial are taken from memory while the import's
   budget has room (``TransferSettings.held``, 64 MB for all files together: 59-78% of the
   bytes of a 1 GB file on the loopback bench), the rest is read back from the partial (its
   pages are still in the page cache). The sink is the same ``Sink``/``StreamSink`` as a
   single stream, which hashes every byte (sha256 or git blob id) and hands it on to the
   tensor split. So verification and ordering are exactly those of one stream: a resumed
   file is re-hashed from its first byte, and blobs are published only after the whole file
   matched;
5. a range that fails (reset, truncated body, HTTP 408/429/5xx, no byte for
   ``HF_HUB_DOWNLOAD_TIMEOUT`` seconds) is retried on its own from the byte it reached, after
   a backoff (``Retry-After`` when the server gives one); a range that keeps failing without
   progress ends the file, and the import, with one line; the partial is kept. A server
   that ignores ``Range`` (answers 200) gets one stream for the whole file instead.

Requests go through huggingface_hub's own session (``get_session()``), headers
(``build_hf_headers``) and URLs (``hf_hub_url``), so tokens, the user agent, proxies and
``HF_ENDPOINT`` mirrors work as with the client itself.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import constants
from huggingface_hub.utils import get_session, hf_raise_for_status

from registry.hub.errors import HubDownloadError
from registry.hub.partial import Partial
from registry.hub.settings import TransferSettings

if TYPE_CHECKING:
    from registry.hub.download import RemoteFile
    from registry.hub.sink import Sink

# A connection is added while the last one raised the file's rate by this factor or more.
GROWTH = 1.1
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
MAX_RETRY_AFTER_S = 60.0


class _Retry(Exception):
    """A failure worth another try of the same range, after ``wait`` seconds."""

    def __init__(self, error: BaseException, wait: float | None = None):
        super().__init__(str(error))
        self.error, self.wait = error, wait


class _Stopped(Exception):
    """Another range failed, or the server ignored ``Range``: this worker stops."""


class StaleResumeError(Exception):
    """A file resumed from a kept partial did not hash right: the partial was discarded."""


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, parsedate_to_datetime(value).timestamp() - time.time()))
    except (TypeError, ValueError):
        return None


class HeldBudget:
    """The bytes that every file of an import may hold in memory for its feeder, together."""

    def __init__(self, limit: int):
        self.limit, self.used, self.lock = limit, 0, threading.Lock()

    def take(self, n: int) -> bool:
        with self.lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self.lock:
            self.used -= n


class RangedFile:
    """One file: ranges over the shared connections into its partial, fed in order to ``sink``."""

    def __init__(self, *, repo_id: str, url: str, headers: dict[str, str], f: RemoteFile, sink: Sink, partial: Partial,
                 settings: TransferSettings, gate: threading.Semaphore,
                 held: HeldBudget, progress: Callable[[int], None] | None,
                 cancel: threading.Event | None = None):
        self.repo_id = repo_id
        self.url, self.headers, self.file, self.sink, self.partial = url, headers, f, sink, partial
        self.settings, self.gate, self.progress = settings, gate, progress or (lambda n: None)
        self.cancel = cancel or threading.Event()
        self.size = f.size
        self.cond = threading.Condition()
        self.failure: BaseException | None = None
        self.whole: int | None = None  # the thread streaming the whole file (Range ignored)
        self.todo: collections.deque[tuple[int, int]] = collections.deque()
        self.running = 0
        self.unsaved = 0
        # Chunks just written to the partial, by offset, for the feeder to take without
        # reading them back (``_mark``), while the import's budget has room.
        self.fresh: dict[int, bytes | memoryview] = {}
        self.held = held  # the import's, shared by its files
        self.save_every = max(1 << 20, min(settings.range_size, 16 << 20) // 2)
        self.location: str | None = None
        self.threads: list[threading.Thread] = []
        # Connections are added one at a time while each addition raises the file's rate
        # (``_after_range``): where the link limits a connection (a CDN) they grow to
        # ``settings.connections``; where the machine is the limit (loopback, 2 cores) a
        # second one that adds nothing stops the growth, and the CPU goes to hashing.
        self.growing = True
        self.window = [time.monotonic(), 0, 0]  # start, bytes, ranges finished at this count
        self.last_rate: float | None = None
        self.timeout = constants.HF_HUB_DOWNLOAD_TIMEOUT
        self.chunk = max(1024, min(constants.DOWNLOAD_CHUNK_SIZE, 1 << 20))

    # --- the calling thread: workers, then the in-order feed -------------------------------

    def run(self) -> None:
        received = self.partial.received
        for a, b in received.missing(self.size):
            for start in range(a, b, self.settings.range_size):
                self.todo.append((start, min(b, start + self.settings.range_size)))
        self.progress(self.partial.resumed)
        with self.cond:
            self.window[0] = time.monotonic()
            if self.todo:
                self._spawn()
        try:
            self._feed()
        finally:
            with self.cond:
                if self.failure is None:
                    self.failure = _Stopped()
                self.cond.notify_all()
                threads = list(self.threads)  # no worker is added once ``failure`` is set
            for t in threads:
                t.join()
            with self.cond:
                self._save()
                self.held.give(sum(len(d) for d in self.fresh.values()))
                self.fresh.clear()

    def _spawn(self) -> None:
        """One more worker (``cond`` held)."""
        t = threading.Thread(target=self._worker, name=f"hub-range {self.file.path} {len(self.threads)}",
                             daemon=True)
        self.running += 1
        self.threads.append(t)
        t.start()

    def _after_range(self, size: int) -> None:
        """A range of ``size`` bytes arrived (``cond`` held): once every worker of the current
        count has finished one, add a connection if the file's rate over that window grew by
        at least ``GROWTH`` since the last one was added; otherwise stop adding."""
        if not self.growing:
            return
        start, window_bytes, ranges = self.window
        self.window = [start, window_bytes + size, ranges + 1]
        if ranges + 1 < len(self.threads):
            return
        now = time.monotonic()
        rate = (window_bytes + size) / max(now - start, 1e-6)
        self.window = [now, 0, 0]
        if self.last_rate is not None and rate < GROWTH * self.last_rate:
            self.growing = False
            return
        self.last_rate = rate
        if len(self.threads) < self.settings.connections and len(self.todo) > 0 and self.failure is None:
            self._spawn()

    def _feed(self) -> None:
        fed = 0
        while fed < self.size:
            with self.cond:
                while True:
                    end = self.partial.received.covered_from(fed)
                    if end > fed:
                        break
                    if self.failure is not None:
                        raise self.failure
                    if self.cancel.is_set():
                        raise KeyboardInterrupt
                    if self.running == 0:
                        raise HubDownloadError(self.repo_id, f"{self.file.path}: bytes {fed}- never arrived")
                    self.cond.wait(0.25)
                data = self._take_fresh(fed)
            if data is None:  # not held (the feeder fell behind, or resumed bytes): read back
                n = min(end - fed, self.settings.feed_chunk, self._next_fresh(fed) - fed)
                data = os.pread(self.partial.fd, n, fed)
                if len(data) != n:
                    raise HubDownloadError(self.repo_id, f"{self.partial.data} is shorter than its record says")
            self.sink.write(data)
            fed += len(data)

    def _take_fresh(self, fed: int) -> bytes | memoryview | None:
        """The held chunk starting at ``fed``, if any (``cond`` held); held chunks the feed has
        passed (a whole-file stream after the server ignored ``Range``) are dropped."""
        data = self.fresh.pop(fed, None)
        if data is not None:
            self.held.give(len(data))
        for start in [s for s in self.fresh if s < fed]:
            self.held.give(len(self.fresh.pop(start)))
        return data

    def _next_fresh(self, fed: int) -> int:
        """Where the first held chunk after ``fed`` starts: a read-back stops there."""
        with self.cond:
            return min((s for s in self.fresh if s > fed), default=self.size)

    # --- workers ---------------------------------------------------------------------------

    def _worker(self) -> None:
        try:
            while True:
                with self.cond:
                    if self.failure is not None or (self.whole is not None) or not self.todo:
                        return
                    a, b = self.todo.popleft()
                self._fetch(a, b)
                with self.cond:
                    self._after_range(b - a)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the feeding thread
            with self.cond:
                if self.failure is None:
                    self.failure = e
        finally:
            with self.cond:
                self.running -= 1
                self.cond.notify_all()

    def _stop_check(self) -> None:
        if self.cancel.is_set() or self.failure is not None:
            raise _Stopped
        if self.whole is not None and self.whole != threading.get_ident():
            raise _Stopped

    def _fetch(self, a: int, b: int) -> None:
        """Bytes ``[a, b)`` into the partial, retried on their own from where they reached."""
        span = [a, b, a]  # start, end, position: widened to the whole file if Range is ignored
        fails, relocated = 0, False
        while span[2] < span[1]:
            self._stop_check()
            before = span[2]
            try:
                self._request(span)
                fails = 0
            except _Retry as retry:
                fails = 1 if span[2] > before else fails + 1  # progress starts a fresh series
                if fails > self.settings.retries:
                    raise retry.error from None
                wait = retry.wait if retry.wait is not None else min(
                    self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (fails - 1))
                if self.cancel.wait(wait):
                    raise _Stopped from None
            except _Expired:
                if relocated:
                    raise HubDownloadError(self.repo_id, f"the download URL of {self.file.path} keeps refusing "
                                                 "requests") from None
                relocated = True
                self.location = None

    def _request(self, span: list[int]) -> None:
        """One request for ``[span[2], span[1])``, advancing ``span[2]`` as bytes are written."""
        b, pos = span[1], span[2]
        url = self.location or self.url
        headers = self._headers_for(url)
        if pos > 0 or b < self.size:
            headers["Range"] = f"bytes={pos}-{b - 1}"
        try:
            with self.gate, get_session().stream("GET", url, headers=headers, timeout=self.timeout,
                                                 follow_redirects=True) as response:
                status = response.status_code
                if status >= 400:
                    response.read()
                if status in RETRY_STATUS:
                    raise _Retry(_status_error(response), _retry_after(response))
                if status in (401, 403, 404) and url != self.url:
                    raise _Expired
                hf_raise_for_status(response)
                if url == self.url and str(response.url) != url:
                    # The resolve URL's redirect (an LFS file's CDN URL): later ranges go there.
                    self.location = str(response.url)
                if status == 200 and "Range" in headers:
                    # The server ignores Range: this connection streams the whole file.
                    with self.cond:
                        if self.whole is None:
                            self.whole = threading.get_ident()
                        elif self.whole != threading.get_ident():
                            raise _Stopped
                    span[:] = [0, self.size, 0]
                    b, pos = self.size, 0
                elif status == 206:
                    got = response.headers.get("Content-Range", "")
                    if not got.startswith(f"bytes {pos}-"):
                        raise HubDownloadError(self.repo_id, f"asked bytes {pos}-{b - 1} of {self.file.path}, "
                                                     f"the server sent {got or 'no Content-Range'}")
                for chunk in response.iter_bytes(self.chunk):
                    if not chunk:
                        continue
                    n = min(len(chunk), b - pos)
                    piece = memoryview(chunk)[:n] if n < len(chunk) else chunk
                    self.partial.write(piece, pos)
                    self._mark(pos, pos + n, piece)
                    pos = span[2] = pos + n
                    if pos >= b:
                        break
                    self._stop_check()
        except httpx2.TransportError as e:
            raise _Retry(e) from e
        if pos < b:
            raise _Retry(httpx2.RemoteProtocolError("the body ended before the range did"))

    def _mark(self, a: int, b: int, data: bytes | memoryview) -> None:
        """Bytes ``[a, b)`` (``data``) are in the partial; kept for the feeder while it has room."""
        with self.cond:
            new = self.partial.received.add(a, b)
            if new == b - a and self.held.take(new):
                self.fresh[a] = data
            self.unsaved += new
            if self.unsaved >= self.save_every:
                self._save()
            self.cond.notify_all()
        self.progress(new)

    def _save(self) -> None:
        """Record what is written (under ``cond``)."""
        self.unsaved = 0
        self.partial.save(self.partial.received.as_list())

    # --- where the bytes are ---------------------------------------------------------------

    def _headers_for(self, url: str) -> dict[str, str]:
        headers = dict(self.headers)
        if urlsplit(url).netloc != urlsplit(self.url).netloc:
            headers.pop("authorization", None)
            headers.pop("Authorization", None)
        return headers


class _Expired(Exception):
    """The CDN URL refused the request (an expired signature): ask the resolve URL again."""


def _status_error(response: httpx2.Response) -> BaseException:
    try:
        hf_raise_for_status(response)
    except Exception as e:  # noqa: BLE001 - the client's own error for this status
        return e
    return httpx2.HTTPStatusError(f"HTTP {response.status_code}", request=response.request, response=response)


def open_partial(tmp_dir: Path, repo_id: str, commit: str, f: RemoteFile) -> Partial:
    # A file checked by its size only cannot tell kept bytes from wrong ones: never resumed.
    return Partial.open(tmp_dir, repo_id, commit, f.path, f.size, f.sha256, f.git_oid,
                        resumable=not f.size_only and bool(f.sha256 or f.git_oid))
