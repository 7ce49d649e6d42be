"""HTTP handler of the fake Hub: routing, access control, ranges and fault injection.

Split from ``server.py`` (which holds the public :class:`~tests.hub.server.HubServer` API and
documents the protocol) so each file stays readable. One handler instance serves one
connection; with HTTP/1.1 keep-alive that is several requests, as with the real Hub.
"""

from __future__ import annotations

import io
import json
import re
import socket
import struct
import time
import traceback
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from .faults import Fault, RequestRecord
from .repos import Commit, HubFile, Repo

if TYPE_CHECKING:
    from .server import HubServer, _Listener

_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
_API = r"^/api/(?P<type>models|datasets|spaces)/" + _REPO
_ROUTES = [  # order matters: single-segment repo ids make "x/refs" ambiguous with info
    ("whoami", re.compile(r"^/api/whoami-v2$")),
    ("tree", re.compile(_API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")),
    ("refs", re.compile(_API + r"/refs$")),
    ("info", re.compile(_API + r"(?:/revision/(?P<rev>[^/]+))?$")),
    ("resolve", re.compile(r"^/(?:(?P<type>datasets|spaces)/)?" + _REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")),
]
_CDN_ROUTE = re.compile(r"^/lfs/(?P<sha>[0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_INVERT = bytes(255 - i for i in range(256))
_CHUNK = 64 * 1024
_SERVER_ERROR = "Internal Error - We're working hard to fix this as soon as possible!"


class _Answered(Exception):
    """An injected ``status`` fault has already answered the request."""


def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values[-1].lower() in ("1", "true", "yes")


def _parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """``(start, end_exclusive)``; None to ignore the header (RFC 9110); False if unsatisfiable."""
    m = _RANGE.match(header.strip())
    if not m or not (m[1] or m[2]):
        return None
    if not m[1]:  # suffix range: the last N bytes
        n = int(m[2])
        return (max(size - n, 0), size) if n and size else False
    start = int(m[1])
    if m[2] and int(m[2]) < start:
        return None  # "bytes=5-3" is invalid, not unsatisfiable
    return (start, min(int(m[2]) + 1 if m[2] else size, size)) if start < size else False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; every response has a length
    # TCP_NODELAY, as production servers set it: with Nagle, a small body written after its
    # headers waits for the client's delayed ACK, about 30-40 ms per small file on loopback.
    disable_nagle_algorithm = True
    server_version = "FakeHub/1.0"
    server: _Listener

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        """Not served (e.g. ``paths-info``, commits), but logged: tests see the unexpected call."""
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # keep the connection usable
        self._dispatch()

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def _dispatch(self) -> None:
        # Logged on arrival and updated before each step reaches the client, so a test never
        # sees a response the log does not show yet.
        self._rec = RequestRecord(method=self.command, path=self.path, server=self.server.role,
                                  headers={k.lower(): v for k, v in self.headers.items()})
        self.hub.request_started(self._rec)
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        try:
            if self.server.role == "cdn":
                m = _CDN_ROUTE.match(split.path)
                self._rec.route = "cdn"
                self._cdn(m, query) if m else self._error(404, "NoSuchKey")
            else:
                for route, pattern in _ROUTES:
                    if m := pattern.match(split.path):
                        self._rec.route = route
                        getattr(self, f"_{route}")(m, query)
                        break
                else:
                    self._error(404, "Not Found")
        except _Answered:
            pass
        except (ConnectionError, TimeoutError):  # the client gave up (timeout, fault)
            self.close_connection = True
        except Exception:
            self._bug()
        finally:
            self.hub.request_finished()

    def _bug(self) -> None:
        self.hub.errors.append(traceback.format_exc())
        self.close_connection = True
        if self._rec.status == 0:
            self._error(500, "fake hub bug, see HubServer.errors")

    def _respond(self, status: int, headers: Mapping[str, str], body: bytes = b"",
                 fault: Fault | None = None) -> None:
        """Send a response; HEAD gets the same headers (and Content-Length) without the body."""
        self._rec.status = status
        if self.hub.response_delay:
            self.hub.stall(self.hub.response_delay)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self._write_body(body, fault)

    def _write_body(self, body: bytes, fault: Fault | None) -> None:
        if fault is None or fault.kind == "norange" or not fault.needs_body:
            return self._write(body)
        if fault.kind == "corrupt":
            kept = min(fault.after_bytes or 0, len(body))
            return self._write(body[:kept] + body[kept:].translate(_INVERT))
        cut = fault.cut(len(body))
        self._write(body[:cut])
        if fault.kind == "stall":
            self.hub.stall(fault.seconds)
            return self._write(body[cut:])
        self.close_connection = True  # "short": clean FIN after a truncated body
        if fault.kind == "drop":  # RST: linger 0, then release every reference to the socket
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.wfile.close()
            self.rfile.close()
            self.connection.close()
            self.wfile = io.BytesIO()  # for the final flush of BaseHTTPRequestHandler

    def _write(self, data: bytes) -> None:
        rate, start, sent = self.hub.rate_limit, time.monotonic(), 0
        with memoryview(data) as view:
            for i in range(0, len(data), _CHUNK):
                chunk = view[i : i + _CHUNK]
                if rate:  # CDN mode: at most ``rate`` bytes/s on this connection
                    ahead = sent / rate - (time.monotonic() - start)
                    if ahead > 0:
                        self.hub.stall(ahead)
                self._rec.bytes_sent += len(chunk)
                self.hub.count_body(len(chunk))
                self.wfile.write(chunk)
                sent += len(chunk)
        self.wfile.flush()

    def _json(self, status: int, payload, headers: Mapping[str, str] | None = None) -> None:
        self._respond(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
                      json.dumps(payload).encode())

    def _error(self, status: int, message: str, code: str | None = None,
               headers: Mapping[str, str] | None = None) -> None:
        extra = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {}), **(headers or {})}
        self._respond(status, {"Content-Type": "application/json; charset=utf-8", **extra},
                      json.dumps({"error": message}).encode())

    def _inject(self, target: str, name: str, has_body: bool = False) -> Fault | None:
        """Fire the armed fault matching this request, if any.

        ``status`` answers the request here (raises ``_Answered``); ``stall`` without a body
        cut sleeps here, before the status line; body faults are returned for ``_respond``.
        """
        fault = self.hub.faults.take(target, self.command, name, has_body)
        if fault is None:
            return None
        self._rec.fault = fault.kind
        if fault.kind == "status":
            self._error(fault.status, _SERVER_ERROR if fault.status >= 500 else "Injected error",
                        fault.error_code)
            raise _Answered
        if fault.kind == "stall" and fault.after_bytes is None:
            self.hub.stall(fault.seconds)
            return None
        return fault

    # -- access control --------------------------------------------------------------------

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _repo(self, m: re.Match, *, files: bool) -> Repo | None:
        """The repo this request may see, or None once the Hub's error has been sent."""
        token, repo_id = self._token(), m["repo"]
        self._rec.repo_id = repo_id
        if token is not None and token not in self.hub.tokens:
            self._error(401, "Invalid credentials in Authorization header")
            return None
        repo = self.hub.repos.get(repo_id) if m["type"] in (None, "models") else None
        granted = repo is not None and token in repo.tokens
        if repo is None or (repo.private and not granted):
            if token is None:
                self._error(401, "Invalid username or password.", "RepoNotFound")
            else:
                self._error(404, "Repository not found", "RepoNotFound")
            return None
        if files and repo.gated and not granted:
            if token is None:
                self._error(401, f"Access to model {repo_id} is restricted. You must have access to it "
                                 "and be authenticated to access it. Please log in.", "GatedRepo")
            else:
                self._error(403, f"Access to model {repo_id} is restricted and you are not in the "
                                 f"authorized list. Visit {self.hub.endpoint}/{repo_id} to ask for access.",
                            "GatedRepo")
            return None
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit | None:
        self._rec.revision = revision
        commit = repo.resolve(revision)
        if commit is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # -- routes ----------------------------------------------------------------------------

    def _whoami(self, m: re.Match, query: dict) -> None:
        user = self.hub.tokens.get(self._token() or "")
        if user is None:
            return self._error(401, "Invalid credentials in Authorization header")
        self._json(200, {"type": "user", "id": user, "name": user, "fullname": user, "orgs": [],
                         "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "read"}}})

    def _info(self, m: re.Match, query: dict) -> None:
        self._inject("info", m["repo"])
        if (repo := self._repo(m, files=False)) is None:
            return
        if (commit := self._commit(repo, unquote(m["rev"] or "main"))) is None:
            return
        info = repo.info(commit, blobs=_truthy(query.get("blobs")) and not self.hub.mirror)
        info["siblings"] = [s for s in info["siblings"] if s["rfilename"] not in self.hub.unlisted]
        expand = query.get("expand", []) + query.get("expand[]", [])
        if expand:
            info = {k: v for k, v in info.items() if k in {"_id", "id", *expand}}
        self._json(200, info)

    def _refs(self, m: re.Match, query: dict) -> None:
        self._inject("refs", m["repo"])
        if (repo := self._repo(m, files=False)) is not None:
            self._json(200, repo.refs())

    def _tree(self, m: re.Match, query: dict) -> None:
        self._inject("tree", m["repo"])
        if (repo := self._repo(m, files=False)) is None:
            return
        if (commit := self._commit(repo, unquote(m["rev"]))) is None:
            return
        path = unquote(m["path"] or "")
        entries = commit.tree(path, recursive=_truthy(query.get("recursive")))
        if entries is None:
            return self._error(404, f'"{path}" does not exist on "{m["rev"]}"', "EntryNotFound")
        entries = [e for e in entries if e["path"] not in self.hub.unlisted]
        if self.hub.mirror:
            entries = [{"type": e["type"], "path": e["path"]} for e in entries]
        if _truthy(query.get("expand")):
            last = {"id": commit.sha, "title": commit.message, "date": commit.iso_date}
            entries = [{**e, "lastCommit": last} for e in entries]
        cursor, size = int(query.get("cursor", ["0"])[0]), self.hub.tree_page_size
        headers = {}
        if cursor + size < len(entries):
            next_query = urlencode({**{k: v[-1] for k, v in query.items()}, "cursor": cursor + size})
            headers["Link"] = f'<{self.hub.endpoint}{urlsplit(self.path).path}?{next_query}>; rel="next"'
        self._json(200, entries[cursor : cursor + size], headers)

    def _resolve(self, m: re.Match, query: dict) -> None:
        if (repo := self._repo(m, files=True)) is None:
            return
        if (commit := self._commit(repo, unquote(m["rev"]))) is None:
            return
        path = self._rec.file = unquote(m["path"])
        f = commit.files.get(path)
        if f is None:
            return self._error(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes"}
        if f.is_lfs:
            headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})
        if not self.hub.hash_headers:  # a proxy's own ETag, no linked one
            headers.pop("X-Linked-Etag", None)
            headers["ETag"] = f'W/"proxy-{f.size}"'
        if not (f.is_lfs and self.hub.lfs_redirect):
            return self._serve(f, path, headers)
        self._inject("file", path)
        self._respond(302, {**headers, "Location": self.hub.cdn_url(f)})

    def _cdn(self, m: re.Match, query: dict) -> None:
        f = self.hub.lfs_blob(m["sha"])
        if f is None:
            return self._error(404, "NoSuchKey")
        name = self._rec.file = query.get("path", [f.path])[-1]
        filename = name.rsplit("/", 1)[-1]
        self._serve(f, name, {
            "ETag": f'"{f.sha256}"', "Accept-Ranges": "bytes",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}; filename=\"{filename}\";",
        })

    def _serve(self, f: HubFile, name: str, headers: dict[str, str]) -> None:
        """File bytes, honouring a single ``Range`` (206/416) and any armed fault."""
        start, end, status = 0, f.size, 200
        if (header := self.headers.get("Range")) is not None:
            span = _parse_range(header, f.size)
            if span is False:
                return self._error(416, "Requested Range Not Satisfiable",
                                   headers={"Content-Range": f"bytes */{f.size}"})
            if span:
                (start, end), status = span, 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{f.size}"
        fault = self._inject("file", name, has_body=self.command == "GET" and end > start)
        if fault is not None and fault.kind == "norange" and status == 206:
            start, end, status = 0, f.size, 200
            del headers["Content-Range"]
        headers["Content-Type"] = "application/octet-stream"
        self._respond(status, headers, f.content[start:end], fault=fault)
