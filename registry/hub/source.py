"""What ``import-model SOURCE`` names on the Hub: a repo id, a Hub URL or an ``hf://`` URI.

Accepted forms (the revision defaults to ``main``)::

    Qwen/Qwen2.5-0.5B
    hf://Qwen/Qwen2.5-0.5B            hf://Qwen/Qwen2.5-0.5B@v1.0
    https://huggingface.co/Qwen/Qwen2.5-0.5B
    https://huggingface.co/Qwen/Qwen2.5-0.5B/tree/<revision>   (everything after /tree/, unquoted)

A huggingface.co (or hf.co) URL names a repo, not a server: it is fetched from the configured
endpoint (``HF_ENDPOINT``), so mirrors keep working. A URL on any other host names that host
as the endpoint. Dataset and Space URLs, file URLs (``/blob/``, ``/resolve/``) and anything
that is not ``namespace/name`` are refused. The id is checked with the Hub's own rules before
it is used anywhere, so a hostile one (``../x``, ``/etc``, ``.git/config``) never reaches a
URL or a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from registry.hub.errors import HubSourceError
from store.errors import UsageError

HUB_HOSTS = frozenset({"huggingface.co", "www.huggingface.co", "hf.co"})
MAX_REPO_ID_LENGTH = 96
# One part of a repo id: word characters, '.', '-'; starting and ending with a word character.
_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_NOT_MODELS = {"datasets": "a dataset", "spaces": "a Space", "buckets": "a bucket", "kernels": "a kernel"}


@dataclass(frozen=True)
class HubSource:
    repo_id: str
    revision: str | None  # as named by the source or --revision; None means main
    endpoint: str | None  # None: the configured endpoint (HF_ENDPOINT)


def repo_id_problem(repo_id: str) -> str | None:
    """Why ``repo_id`` is not a valid ``namespace/name`` model repo id, or None."""
    if len(repo_id) > MAX_REPO_ID_LENGTH:
        return f"a repo id has at most {MAX_REPO_ID_LENGTH} characters"
    parts = repo_id.split("/")
    if len(parts) != 2:
        return "a repo id is namespace/name, with exactly one '/'"
    if "--" in repo_id or ".." in repo_id:
        return "a repo id must not contain '--' or '..'"
    for part in parts:
        if not _PART.fullmatch(part):
            return (f"{part!r} is not a valid part of a repo id (letters, digits, '_', '.', '-', "
                    "starting and ending with a letter, digit or '_')")
    if repo_id.endswith(".git"):
        return "a repo id must not end with '.git'"
    return None


def revision_problem(revision: str) -> str | None:
    if not revision or revision != revision.strip():
        return "a revision must not be empty or start or end with spaces"
    if any(ord(c) < 32 or ord(c) == 127 for c in revision) or len(revision) > 256:
        return "a revision must not contain control characters or be that long"
    return None


def parse_hub_source(source: str, revision: str | None = None) -> HubSource:
    """Parse SOURCE (and ``--revision``) into a repo id, a revision and an endpoint."""
    text = source.strip()
    endpoint = named_revision = None
    if text.startswith("hf://"):
        path = text[len("hf://"):]
        if "@" in path:
            path, named_revision = path.split("@", 1)
            named_revision = unquote(named_revision)
        repo_id = path.strip("/")
        _refuse_other_repo_types(source, repo_id.split("/", 1)[0])
    elif text.startswith(("http://", "https://")):
        repo_id, named_revision, endpoint = _parse_url(source, text)
    else:
        repo_id = text
    problem = repo_id_problem(repo_id)
    if problem:
        raise HubSourceError(source, problem)
    if named_revision is not None and revision is not None and named_revision != revision:
        raise UsageError(f"{source} names revision {named_revision!r} but --revision is {revision!r}",
                         "give the revision once")
    chosen = revision if revision is not None else named_revision
    if chosen is not None and (problem := revision_problem(chosen)):
        raise HubSourceError(source, f"revision {chosen!r}: {problem}", "pass a branch, tag or commit sha")
    return HubSource(repo_id=repo_id, revision=chosen, endpoint=endpoint)


def _parse_url(source: str, text: str) -> tuple[str, str | None, str | None]:
    url = urlsplit(text)
    host = (url.hostname or "").lower()
    if not host or url.username or url.password:
        raise HubSourceError(source, "the URL has no host, or carries credentials",
                             "pass tokens with --token, never inside a URL")
    endpoint = None if host in HUB_HOSTS else f"{url.scheme}://{url.netloc}"
    parts = [unquote(p) for p in url.path.split("/") if p]
    _refuse_other_repo_types(source, parts[0] if parts else "")
    if len(parts) < 2:
        raise HubSourceError(source, "the URL does not name a namespace/name repo")
    repo_id, rest = "/".join(parts[:2]), parts[2:]
    if problem := repo_id_problem(repo_id):
        raise HubSourceError(source, problem)
    if not rest:
        return repo_id, None, endpoint
    if rest[0] == "tree" and len(rest) > 1:
        return repo_id, "/".join(rest[1:]), endpoint
    if rest[0] in ("blob", "resolve"):
        raise HubSourceError(source, "it is the URL of one file, not of a repo",
                             f"use https://huggingface.co/{repo_id}")
    raise HubSourceError(source, f"unexpected {'/'.join(rest)!r} after the repo id",
                         f"use https://huggingface.co/{repo_id}[/tree/REVISION]")


def _refuse_other_repo_types(source: str, first: str) -> None:
    if first in _NOT_MODELS:
        raise HubSourceError(source, f"it is {_NOT_MODELS[first]}, not a model repo",
                             "import-model takes model repos only")
