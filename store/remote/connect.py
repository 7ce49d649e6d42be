"""Opening a remote's backend from its URL (kept apart from ``store.remote.backend``, which the
backends import, so there is no import cycle)."""

from __future__ import annotations

from store.remote.backend import Backend, parse_url


def open_backend(label: str, url: str, endpoint: str | None = None) -> Backend:
    """The backend for ``url``; credentials come from the environment (never stored)."""
    parsed = parse_url(url)
    if parsed.scheme == "file":
        from store.remote.file import FileBackend

        return FileBackend(label, parsed.location)
    from store.remote.s3 import S3Backend

    return S3Backend(label, parsed.location, parsed.prefix, endpoint)
