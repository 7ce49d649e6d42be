"""The Hugging Face Hub's errors: bad sources, missing repos or revisions, gated repos,
rejected tokens, network failures, unsafe listings and wrong bytes. Nothing was registered."""

from __future__ import annotations

from store.errors import Hint, ModelStoreError, Next, Text

_TOKEN_HINT = "pass --token, set HF_TOKEN, or run `hf auth login`"


class HubError(ModelStoreError):
    """Importing from (or restoring from) the Hugging Face Hub failed; nothing was registered."""

    def __init__(self, repo_id: str | None, message: str, hint: Hint | None = None):
        super().__init__(message, hint)
        self.repo_id = repo_id


class HubSourceError(HubError, ValueError):
    """A repo id or Hub URL that cannot name a model repo (malformed, hostile, not a model)."""

    exit_code = 2

    def __init__(self, source: str, reason: str, hint: Hint | None = None):
        super().__init__(None, f"{source!r} is not a Hub model repo: {reason}",
                         hint or "use a repo id such as Qwen/Qwen2.5-0.5B, or a Hub URL "
                                 "(https://huggingface.co/Qwen/Qwen2.5-0.5B[/tree/REVISION])")
        self.source = source


class HubRepoNotFoundError(HubError, LookupError):
    """The Hub says the repo does not exist, or hides it (private) from this token."""

    def __init__(self, repo_id: str, endpoint: str, with_token: bool):
        hint = ("check the repo id; if the repo is private, make sure your token has access to it"
                if with_token else f"check the repo id; if the repo is private, {_TOKEN_HINT}")
        super().__init__(repo_id, f"repo {repo_id!r} was not found on {endpoint}", hint)


class HubRevisionNotFoundError(HubError, LookupError):
    def __init__(self, repo_id: str, revision: str, endpoint: str):
        super().__init__(repo_id, f"repo {repo_id!r} has no branch, tag or commit {revision!r}",
                         f"pick one listed at {endpoint}/{repo_id}/tree/main, or omit --revision for main")
        self.revision = revision


class HubGatedRepoError(HubError, PermissionError):
    """A gated repo: the user must accept its conditions on the Hub and authenticate."""

    def __init__(self, repo_id: str, endpoint: str, with_token: bool):
        page = f"{endpoint}/{repo_id}"
        if with_token:
            message = f"repo {repo_id!r} is gated and your token has not been granted access"
            hint = f"request access on {page}, wait for approval, then run the command again"
        else:
            message = f"repo {repo_id!r} is gated: downloading it needs a token with access"
            hint = f"accept its conditions on {page}, then {_TOKEN_HINT}"
        super().__init__(repo_id, message, hint)
        self.with_token = with_token


class HubAuthError(HubError, PermissionError):
    """The Hub rejected the token itself (unknown, revoked or malformed)."""

    def __init__(self, repo_id: str | None, endpoint: str, token_source: str):
        super().__init__(repo_id, f"the Hub at {endpoint} rejected the token from {token_source}",
                         f"check it, or create a new one at {endpoint}/settings/tokens; {_TOKEN_HINT}")
        self.token_source = token_source


class HubDownloadError(HubError, OSError):
    """The network failed (refused, reset, timed out, HTTP 5xx, truncated body)."""

    def __init__(self, repo_id: str | None, message: str):
        super().__init__(repo_id, message, "check the connection and run the command again: it resumes "
                                           "(nothing was registered; blobs already stored and the bytes "
                                           "already downloaded, kept in .modelstore/tmp, are reused)")


class HubUnsafePathError(HubError, ValueError):
    """The repo's file listing names a path that could land outside any folder it is fetched into."""

    def __init__(self, repo_id: str, where: str, path: str, problem: str):
        super().__init__(repo_id, f"{where} lists the unsafe file path {path!r} ({problem})",
                         "the whole repo is refused and nothing was downloaded; a Hub never lists such "
                         "paths, so check the endpoint (HF_ENDPOINT) or mirror you are using")
        self.path = path
        self.problem = problem


class HubIntegrityError(HubError, ValueError):
    """A downloaded file does not hash to what the Hub lists for it (wrong bytes)."""

    def __init__(self, repo_id: str, path: str, kind: str, expected: str, actual: str):
        super().__init__(repo_id, f"{path} from {repo_id} has {kind} {actual}, but the Hub lists {expected}",
                         "run the command again (nothing was registered); if it persists, "
                         "a proxy or mirror is serving wrong bytes")
        self.path = path
        self.expected = expected
        self.actual = actual


class HubConfigError(HubError, ValueError):
    """A transfer setting (``--connections``, ``MODELSTORE_HUB_*``) that is not a usable number."""

    exit_code = 2

    def __init__(self, name: str, value: str, expected: str):
        super().__init__(None, f"{name} is {value!r}, expected {expected}",
                         f"fix {name} (or leave it unset for the default) and run the command again")
        self.name, self.value = name, value


class HubInterruptedError(HubError):
    """The import was interrupted (Ctrl-C); what was downloaded is kept for the next run."""

    exit_code = 130

    def __init__(self, repo_id: str | None, kept: int):
        from registry.report import human_bytes

        kept_text = f"{human_bytes(kept)} downloaded so far is kept" if kept else "blobs already stored are kept"
        super().__init__(repo_id, f"interrupted; nothing was registered; {kept_text}: run the same command "
                                  "again to resume")
        self.kept = kept


class HubUnverifiableError(HubError, ValueError):
    """The endpoint gives no size or no hash for a file, neither in its listing nor in a HEAD:
    its bytes could not be checked, so the file is not imported (unless sizes-only is accepted)."""

    def __init__(self, repo_id: str, endpoint: str, path: str, missing: str):
        hint = (Text("use an endpoint that serves file hashes (the Hub does), or accept a size-only check: ",
                     Next("import-model", repo_id, "--trust-size-only")) if missing != "size" else
                "use an endpoint that serves file metadata (the Hub does)")
        super().__init__(repo_id, f"{endpoint} gives no {missing} for {repo_id}/{path} (in its listing or "
                                  "a HEAD of the file), so its bytes cannot be verified", hint)
        self.endpoint, self.path, self.missing = endpoint, path, missing
