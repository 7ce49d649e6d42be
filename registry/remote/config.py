"""The configured remotes: ``.modelstore/remotes.json``, one msgspec record, written atomically.

It holds names, URLs and endpoints only: credentials are never written anywhere (they come
from the AWS environment variables or profile when a remote is used).
"""

from __future__ import annotations

import re

import msgspec

from registry.remote.errors import InvalidRemoteNameError, RemoteExistsError, RemoteNotFoundError
from registry.workspace import Workspace
from store.fs import fsops
from store.codec import Record, decode, encode_pretty
from store.errors import UsageError
from store.remote.backend import Backend, parse_url
from store.remote.connect import open_backend
from store.remote.objects import RemoteStore

CONFIG_FILENAME = "remotes.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class RemoteConfig(Record, omit_defaults=True):
    url: str
    endpoint_url: str | None = None


class RemotesFile(Record):
    version: int = 1
    default: str | None = None
    remotes: dict[str, RemoteConfig] = {}


class Remote:
    """A configured remote, opened: ``store`` does its object I/O."""

    def __init__(self, name: str, config: RemoteConfig, backend: Backend | None = None):
        self.name = name
        self.config = config
        self.store = RemoteStore(backend or open_backend(name, config.url, config.endpoint_url))

    def __str__(self) -> str:
        return f"{self.name} ({self.config.url})"


def _path(workspace: Workspace):
    return workspace.layout.store / CONFIG_FILENAME


def read_config(workspace: Workspace) -> RemotesFile:
    try:
        data = _path(workspace).read_bytes()
    except FileNotFoundError:
        return RemotesFile()
    try:
        return decode(data, RemotesFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise UsageError(f"{_path(workspace)} is unreadable ({e})",
                         "fix or remove it, then add the remotes again") from None


def _write(workspace: Workspace, doc: RemotesFile) -> None:
    workspace.layout.create()
    fsops.atomic_write(_path(workspace), encode_pretty(doc), workspace.layout.tmp)


def add_remote(workspace: Workspace, name: str, url: str, endpoint_url: str | None = None,
               default: bool = False) -> RemoteConfig:
    if not _NAME.fullmatch(name):
        raise InvalidRemoteNameError(name)
    parsed = parse_url(url)
    if endpoint_url is not None and parsed.scheme != "s3":
        raise UsageError("--endpoint-url applies to s3:// remotes only", "drop it for a file:// remote")
    if endpoint_url is not None and not re.fullmatch(r"https?://[^\s/]+/?", endpoint_url):
        raise UsageError(f"endpoint URL {endpoint_url!r} is not http(s)://HOST[:PORT]",
                         "give the server's base URL, e.g. http://127.0.0.1:8333")
    with workspace.locked():
        doc = read_config(workspace)
        if name in doc.remotes:
            raise RemoteExistsError(name)
        config = RemoteConfig(url=str(parsed), endpoint_url=endpoint_url)
        doc.remotes[name] = config
        if default or len(doc.remotes) == 1:
            doc.default = name
        _write(workspace, doc)
    return config


def remove_remote(workspace: Workspace, name: str) -> RemoteConfig:
    with workspace.locked():
        doc = read_config(workspace)
        if name not in doc.remotes:
            raise RemoteNotFoundError(name, sorted(doc.remotes))
        config = doc.remotes.pop(name)
        if doc.default == name:
            doc.default = next(iter(doc.remotes)) if len(doc.remotes) == 1 else None
        _write(workspace, doc)
    return config


def open_remote(workspace: Workspace, name: str | None) -> Remote:
    """The remote called ``name``; without one, the default (or the only) remote."""
    doc = read_config(workspace)
    if name is None:
        name = doc.default or (next(iter(doc.remotes)) if len(doc.remotes) == 1 else None)
    if name is None or name not in doc.remotes:
        raise RemoteNotFoundError(name, sorted(doc.remotes))
    return Remote(name, doc.remotes[name])


def all_remotes(workspace: Workspace) -> list[Remote]:
    """Every configured remote, the default first (for restoring objects)."""
    doc = read_config(workspace)
    names = sorted(doc.remotes, key=lambda n: (n != doc.default, n))
    return [Remote(n, doc.remotes[n]) for n in names]
