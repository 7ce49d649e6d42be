"""Errors of push, pull and the remotes' configuration; each carries the names it is about."""

from __future__ import annotations

from store.errors import ModelStoreError, Next, Text, UsageError


class RemoteNotFoundError(UsageError, LookupError):
    def __init__(self, remote: str | None, known: list[str]):
        if remote is None:
            message = ("no remote given and " + ("none is configured" if not known else
                       f"no default among {', '.join(known)}"))
        else:
            message = f"no remote named {remote!r}" + (f" (configured: {', '.join(known)})" if known else "")
        super().__init__(message, Text("add one with `", Next("remote", "add", "NAME", "URL"),
                                           "`, or pass --remote NAME"))
        self.remote = remote


class RemoteExistsError(UsageError):
    def __init__(self, remote: str):
        super().__init__(f"a remote named {remote!r} exists already",
                         Text("remove it first with `", Next("remote", "remove", remote), "`, or pick another name"))
        self.remote = remote


class InvalidRemoteNameError(UsageError):
    def __init__(self, remote: str):
        super().__init__(f"invalid remote name {remote!r}",
                         "use ASCII letters, digits, '.', '_' and '-', starting with a letter or digit")
        self.remote = remote


class RemoteModelNotFoundError(ModelStoreError, LookupError):
    def __init__(self, remote: str, name: str, known: list[str]):
        near = f" (did you mean {' or '.join(known)}?)" if known else ""
        super().__init__(f"remote {remote} has no model {name!r}{near}",
                         Text("`", Next("list-models", "--remote", remote), "` lists what it holds"))
        self.remote, self.name = remote, name


class RemoteRefError(ModelStoreError, ValueError):
    """A ref on the remote is unreadable, or names a manifest the remote cannot serve."""

    def __init__(self, remote: str, name: str, detail: str):
        super().__init__(f"remote {remote}: the ref of {name!r} is unusable: {detail}",
                         "nothing was changed here; push the model again from a store that holds it")
        self.remote, self.name, self.detail = remote, name, detail


class PushConflictError(ModelStoreError):
    """Another store pushed this name first (the conditional write lost)."""

    def __init__(self, remote: str, name: str, version: str, pushed_by: str | None):
        by = f" by {pushed_by}" if pushed_by else ""
        super().__init__(
            f"push of {name!r} to {remote} lost to another push: {remote} now has {name!r} at version "
            f"{version[:12]}{by}",
            "pull it to compare, or run the push again with --force to replace it")
        self.remote, self.name, self.version, self.pushed_by = remote, name, version, pushed_by


class NotFastForwardError(ModelStoreError):
    """The remote's version of the name is not in the lineage of the one being pushed."""

    def __init__(self, remote: str, name: str, theirs: str, ours: str):
        super().__init__(
            f"{remote} has {name!r} at version {theirs[:12]}, which is not an ancestor of the local "
            f"version {ours[:12]}",
            "pull it under another name to compare, or push with --force to replace it")
        self.remote, self.name, self.theirs, self.ours = remote, name, theirs, ours


class PullConflictError(ModelStoreError):
    def __init__(self, remote: str, name: str, local: str, theirs: str):
        super().__init__(
            f"{name!r} is registered here at version {local[:12]}, and {remote} has version {theirs[:12]}, "
            "which does not descend from it",
            "pass --on-conflict overwrite to replace it, or --on-conflict rename to keep both")
        self.remote, self.name, self.local, self.theirs = remote, name, local, theirs


class RemoteLockedError(ModelStoreError):
    """Remote maintenance (gc) holds the remote's lock."""

    def __init__(self, remote: str, owner: str, host: str, age_s: float, expired: bool):
        state = "a stale lock (expired)" if expired else "its lock"
        hint = (Text("if that gc is dead, run `", Next("gc", "--remote", remote, "--break-lock"), "`") if expired
                else "wait for it to finish, then run the command again")
        super().__init__(f"remote {remote}: gc by {owner} on {host} holds {state}, taken {_age(age_s)} ago",
                         hint)
        self.remote, self.owner, self.host, self.age_s, self.expired = remote, owner, host, age_s, expired


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
