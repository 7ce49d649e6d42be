"""Fault injection and request recording for the fake Hub.

Why: the import code must survive what real downloads do (connections reset mid-file, a CDN
that stalls or ignores ``Range``, truncated bodies, a flaky 500, bytes that are the right
length but wrong) and tests must be able to prove what went over the wire (e.g. that no
``*.safetensors`` byte was ever fetched when only the config was asked for). Both are plain
thread-safe objects the server consults on every request; tests configure them through
``server.faults`` and read ``server.requests``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

KINDS = ("status", "stall", "drop", "short", "corrupt", "norange")
BODY_KINDS = ("drop", "short", "corrupt")
TARGETS = ("file", "info", "tree", "refs", "any")


@dataclass
class Fault:
    """One injected failure.

    kind:
        ``status``  answer ``status`` (default 500, optional ``X-Error-Code: error_code``) instead;
        ``stall``   sleep ``seconds`` before the status line (``after_bytes=None``) or after
                    ``after_bytes`` body bytes, then carry on (a client with a shorter read
                    timeout gives up first);
        ``drop``    send ``after_bytes`` body bytes then reset the connection (TCP RST);
        ``short``   announce the full ``Content-Length``, send ``after_bytes`` bytes, then
                    close cleanly (FIN): a truncated body;
        ``corrupt`` send the right number of bytes, every one of them inverted (from
                    ``after_bytes`` on when it is given: a header left intact);
        ``norange`` answer a ``Range`` request with 200 and the whole file, as a CDN that
                    ignores ``Range`` does (it fires on the first matching response with file
                    bytes, ranged or not: arm it after the fault that breaks the first one).
        ``after_bytes`` defaults to half the body (to 0 for ``corrupt``).
    Which requests: ``target`` (``file`` = ``/resolve`` and CDN requests, ``info``, ``tree``,
    ``refs``, ``any``), ``method`` (``GET``, ``HEAD`` or ``*``) and ``match``, a glob on the
    repo file path (file requests) or repo id (others). Body kinds only match responses that
    carry file bytes, so a ``drop`` aimed at ``*.safetensors`` skips the HEAD and the LFS
    redirect and hits the request that actually streams the weights.
    When: the first ``skip`` matching requests pass untouched ("fail the third download" is
    ``skip=2``), then the fault fires ``times`` times (``None``: forever).
    """

    kind: str
    match: str = "*"
    target: str = "file"
    method: str = "GET"
    times: int | None = 1
    skip: int = 0
    status: int = 500
    error_code: str | None = None
    seconds: float = 5.0
    after_bytes: int | None = None
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}, expected one of {KINDS}")
        if self.target not in TARGETS:
            raise ValueError(f"unknown fault target {self.target!r}, expected one of {TARGETS}")
        if self.needs_body and self.target not in ("file", "any"):
            raise ValueError(f"{self.kind!r} faults with a body cut only apply to file requests")

    @property
    def needs_body(self) -> bool:
        """Whether this fault acts on body bytes (so it can only fire on a response that has some)."""
        if self.kind == "stall":
            return self.after_bytes is not None
        return self.kind in (*BODY_KINDS, "norange")

    def matches(self, target: str, method: str, name: str, has_body: bool) -> bool:
        return (
            self.target in (target, "any")
            and self.method in (method, "*")
            and fnmatchcase(name, self.match)
            and (has_body or not self.needs_body)
        )

    def cut(self, body_size: int) -> int:
        """How many body bytes go out before a drop/short/stall strikes."""
        return min(body_size, body_size // 2 if self.after_bytes is None else self.after_bytes)


class FaultPlan:
    """The faults armed on a server; the first armed fault matching a request fires."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, kind: str, **options) -> Fault:
        """Arm a fault (see :class:`Fault` for the options) and return it, to read ``fired``."""
        fault = Fault(kind, **options)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __iter__(self):
        with self._lock:
            return iter(list(self._faults))

    def take(self, target: str, method: str, name: str, has_body: bool) -> Fault | None:
        """Count this request against every matching fault; return the one that fires, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.times is not None and fault.fired >= fault.times:
                    continue
                if not fault.matches(target, method, name, has_body):
                    continue
                fault.seen += 1
                if fault.seen > fault.skip:
                    fault.fired += 1
                    return fault
        return None


@dataclass
class RequestRecord:
    """One request as the server saw it. ``headers`` keys are lower-case.

    Logged when the request arrives and updated while it is served, always before the client
    can observe the change: ``status`` is 0 until the status line goes out, ``bytes_sent``
    counts body bytes handed to the socket.
    """

    method: str
    path: str
    server: str  # "hub" or "cdn"
    headers: dict[str, str] = field(repr=False)
    route: str = "unknown"  # whoami, info, tree, refs, resolve, cdn
    status: int = 0
    bytes_sent: int = 0
    repo_id: str | None = None
    revision: str | None = None
    file: str | None = None
    fault: str | None = None

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


class RequestLog:
    """Thread-safe, append-only record of every request, for assertions after the fact."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def __iter__(self):
        with self._lock:
            return iter(list(self._records))

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __getitem__(self, index):
        with self._lock:
            return self._records[index]

    def file_requests(self, pattern: str = "*", method: str = "GET") -> list[RequestRecord]:
        """Requests for repo files whose path matches ``pattern`` (``/resolve`` and CDN)."""
        return [
            r for r in self
            if r.file is not None and fnmatchcase(r.file, pattern) and method in (r.method, "*")
        ]

    def bytes_served(self, pattern: str = "*") -> int:
        """File bytes sent (200/206 bodies, not error pages) for files matching ``pattern``."""
        return sum(r.bytes_sent for r in self.file_requests(pattern, method="*") if r.status in (200, 206))

    def routes(self) -> list[str]:
        return [f"{r.method} {r.route}" for r in self]
