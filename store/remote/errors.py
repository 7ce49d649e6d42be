"""Errors of a remote's object I/O (``store.remote``): each names the remote and the key.

They subclass ``ModelStoreError`` so the CLI renders them as one line with a next step;
they live here, beside the code that raises them, not in ``store.errors``.
"""

from __future__ import annotations

from store.errors import ModelStoreError


class RemoteError(ModelStoreError):
    """Something about a remote: unreachable, refused, or holding what it should not."""

    def __init__(self, remote: str, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.remote = remote


class RemoteURLError(RemoteError, ValueError):
    exit_code = 2

    def __init__(self, url: str, problem: str):
        super().__init__(url, f"remote URL {url!r} is not usable: {problem}",
                         "use s3://BUCKET/PREFIX or file:///ABSOLUTE/PATH")
        self.url = url


class RemoteIOError(RemoteError, OSError):
    """A request to the remote failed (network, permissions, server error)."""

    def __init__(self, remote: str, key: str, detail: str):
        super().__init__(remote, f"remote {remote}: {key}: {detail}",
                         "check the URL, the endpoint and the AWS credentials in the environment, "
                         "then run the command again (what was transferred is kept)")
        self.key = key


class RemoteObjectMissingError(RemoteError, LookupError):
    def __init__(self, remote: str, key: str, what: str = "object"):
        super().__init__(remote, f"remote {remote} has no {what} {key}",
                         "push it again from a store that holds it")
        self.key = key


class RemoteCorruptError(RemoteError, ValueError):
    """What the remote sent is not what its name says (bad hash, wrong size, bad JSON)."""

    def __init__(self, remote: str, key: str, detail: str):
        super().__init__(remote, f"remote {remote}: {key} is corrupt: {detail}",
                         "nothing of it entered the store; push it again from a store that holds it "
                         "intact")
        self.key = key
        self.detail = detail


class RefExistsError(RemoteError):
    """A conditional create found the key already there (If-None-Match: * failed)."""

    def __init__(self, remote: str, key: str):
        super().__init__(remote, f"remote {remote}: {key} already exists")
        self.key = key


class RefMovedError(RemoteError):
    """A conditional replace found the key changed since it was read (If-Match failed)."""

    def __init__(self, remote: str, key: str):
        super().__init__(remote, f"remote {remote}: {key} changed since it was read")
        self.key = key
