"""The project's errors: one small hierarchy, shared by every layer.

Every error carries the name, digest or path it is about, subclasses the builtin that fits
(``LookupError``, ``OSError``, ``ValueError``), and renders as one line that names the
problem and the next step. ``cli.errors`` maps them to a message and an exit code in one place;
library code raises them and never exits.
"""

from __future__ import annotations

from pathlib import Path


class ModelStoreError(Exception):
    """Base of every error the CLI reports as one line (exit code ``exit_code``)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(ModelStoreError, ValueError):
    """The command line asked for something that cannot be done as asked."""

    exit_code = 2


class Aborted(ModelStoreError):
    """The user declined a confirmation; nothing was changed."""

    exit_code = 1


# --- the store --------------------------------------------------------------------------


class StoreFormatError(ModelStoreError, ValueError):
    """``.modelstore/FORMAT`` is missing, unreadable, or of a version this code cannot use."""

    def __init__(self, path: Path, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.path = path


# Why a writer finds an object it has just written or reused gone before its commit.
REMOVED_IN_FLIGHT_HINT = ("it was removed while this command ran (by `modelstore gc` with a grace "
                          "period shorter than the write?); nothing was registered: run the command again")


class ObjectMissingError(ModelStoreError, LookupError):
    def __init__(self, digest: str, path: Path, hint: str | None = None):
        super().__init__(
            f"object {digest} is missing ({path})",
            hint or "run `modelstore validate-registry --fix` to restore it",
        )
        self.digest = digest
        self.path = path


class CorruptObjectError(ModelStoreError, ValueError):
    def __init__(self, digest: str, path: Path, actual: str | None, detail: str = ""):
        what = detail or (f"its bytes hash to {actual}" if actual else "its bytes do not match")
        super().__init__(
            f"object {digest} is corrupt: {what} ({path})",
            "run `modelstore validate-registry --fix` to quarantine and restore it",
        )
        self.digest = digest
        self.path = path
        self.actual = actual


class StoreIOError(ModelStoreError, OSError):
    """A filesystem operation of the store failed (disk full, permissions, ...).

    ``committed``: the step failed after the command's commit point (the registry replace),
    so the change is made and stays: the hint says so instead of "nothing was registered",
    and nothing may be rolled back.
    """

    def __init__(self, path: Path | str, cause: OSError, *, hint: str | None = None,
                 committed: bool = False):
        import errno as _errno

        name = _errno.errorcode.get(cause.errno or 0, "error")
        if committed and hint is None:
            hint = ("the change itself was made and stays, but may not survive a power failure; "
                    "free some disk space, then run `modelstore validate-registry`")
        hint = hint or {
            _errno.ENOSPC: "free some disk space and run the command again (nothing was registered)",
            _errno.EDQUOT: "free some quota and run the command again (nothing was registered)",
            _errno.EACCES: "check the permissions of the store folder",
            _errno.EROFS: "the store is on a read-only filesystem",
        }.get(cause.errno or 0, "check the path and run the command again")
        super().__init__(f"{name}: {cause.strerror or cause} at {path}", hint)
        self.committed = committed
        self.errno = cause.errno
        self.strerror = cause.strerror
        self.filename = str(path)
        self.path = Path(path)

    def after_commit(self, hint: str | None = None) -> StoreIOError:
        """The same failure, raised by a step that ran after the command's commit point."""
        return StoreIOError(self.path, OSError(self.errno, self.strerror, self.filename), hint=hint,
                            committed=True)


class UnsafePathError(ModelStoreError, OSError):
    """A folder modelstore writes into is a symlink (or not a folder): never written through."""

    def __init__(self, path: Path | str, detail: str):
        super().__init__(
            f"{path} {detail}; modelstore never writes through links in its own folders",
            "remove or move it away and run the command again (nothing was written)",
        )
        self.path = Path(path)
        self.filename = str(path)


class SourceChangedError(ModelStoreError, OSError):
    """A source file changed while it was being copied into the store."""

    def __init__(self, path: Path):
        super().__init__(
            f"{path} changed while it was being imported",
            "make sure nothing writes to the source folder and run the import again",
        )
        self.path = path


# --- input files ------------------------------------------------------------------------


class SafetensorsError(ModelStoreError, ValueError):
    """A file that should be safetensors is malformed or is something else entirely."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(
            f"{path} is not a valid safetensors file: {reason}",
            "re-export the weights with safetensors (nothing was imported)",
        )
        self.path = Path(path)
        self.reason = reason


class PickleWeightsError(ModelStoreError, ValueError):
    """Weights in pickle formats are refused: loading them can run arbitrary code."""

    def __init__(self, path: Path | str, detail: str = ""):
        super().__init__(
            f"{path} holds pickle weights{detail}, which modelstore never loads "
            "because unpickling can run arbitrary code",
            "convert the weights to safetensors (e.g. with the `safetensors` convert script) "
            "and import the converted folder",
        )
        self.path = Path(path)


class SourceError(ModelStoreError, OSError):
    """An import source is missing, unreadable or not a model folder."""

    def __init__(self, path: Path | str, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.path = Path(path)
        self.filename = str(path)


class ManifestError(ModelStoreError, ValueError):
    """A manifest does not decode or does not describe a usable model version."""

    def __init__(self, digest: str, reason: str):
        super().__init__(
            f"manifest {digest} is unreadable: {reason}",
            "run `modelstore validate-registry` for a full report",
        )
        self.digest = digest
        self.reason = reason


# --- names and the registry -------------------------------------------------------------


class InvalidNameError(ModelStoreError, ValueError):
    exit_code = 2

    def __init__(self, name: str, rule: str):
        super().__init__(f"invalid model name {name!r}: {rule}", "choose another name with --name")
        self.name = name
        self.rule = rule


class ModelNotFoundError(ModelStoreError, LookupError):
    def __init__(self, name: str, suggestions: list[str] | None = None):
        hint = "run `modelstore list-models` to see the registered names"
        if suggestions:
            hint = "did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
        super().__init__(f"no model named {name!r} is registered", hint)
        self.name = name


class ModelExistsError(ModelStoreError, FileExistsError):
    def __init__(self, name: str, message: str | None = None, hint: str | None = None):
        super().__init__(
            message or f"a model named {name!r} is already registered",
            hint or "pass --on-conflict overwrite|rename, or choose another --name",
        )
        self.name = name
        self.filename = name


class ViewMissingError(ModelStoreError, LookupError):
    def __init__(self, name: str, path: Path):
        super().__init__(
            f"the view of model {name!r} is missing ({path})",
            "run `modelstore validate-registry --fix` to rebuild it",
        )
        self.name = name
        self.path = path


class RegistryError(ModelStoreError, ValueError):
    """``models/registry.json`` cannot be read as a registry of this schema."""

    def __init__(self, path: Path, reason: str, hint: str | None = None):
        super().__init__(
            f"{path} is damaged: {reason}",
            hint or "run `modelstore validate-registry --fix` to recover it",
        )
        self.path = path
        self.reason = reason


class UnsupportedArchitectureError(ModelStoreError, ValueError):
    def __init__(self, model_type: str | None, supported: list[str], where: str = "",
                 why: str | None = None):
        got = repr(model_type) if model_type else "no model_type"
        super().__init__(
            f"unsupported architecture {got}{where}" + (f": {why}" if why else ""),
            "supported: " + ", ".join(supported),
        )
        self.why = why
        self.model_type = model_type
        self.supported = supported


# --- maintenance ------------------------------------------------------------------------


class StoreChangedError(ModelStoreError):
    """The store changed between a maintenance plan and its execution; nothing more was done."""

    def __init__(self, what: str):
        super().__init__(f"{what} changed while the repair was being planned",
                         "run `modelstore validate-registry --fix` again")
        self.what = what


class GcAbortedError(ModelStoreError):
    """gc refuses to delete anything while it cannot know everything that is reachable."""

    def __init__(self, problems: list[str]):
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        super().__init__(
            f"gc aborted, nothing was deleted: {shown}",
            "run `modelstore validate-registry` and repair or delete the models it names",
        )
        self.problems = problems


# --- the Hugging Face Hub -----------------------------------------------------------------

_TOKEN_HINT = "pass --token, set HF_TOKEN, or run `hf auth login`"


class HubError(ModelStoreError):
    """Importing from (or restoring from) the Hugging Face Hub failed; nothing was registered."""

    def __init__(self, repo_id: str | None, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.repo_id = repo_id


class HubSourceError(HubError, ValueError):
    """A repo id or Hub URL that cannot name a model repo (malformed, hostile, not a model)."""

    exit_code = 2

    def __init__(self, source: str, reason: str, hint: str | None = None):
        super().__init__(None, f"{source!r} is not a Hub model repo: {reason}",
                         hint or "use a repo id such as Qwen/Qwen2.5-0.5B, or a Hub URL "
                                 "(https://huggingface.co/Qwen/Qwen2.5-0.5B[/tree/REVISION])")
        self.source = source


class HubRepoNotFoundError(HubError, LookupError):
    """The Hub says the repo does not exist, or hides it (private) from this token."""

    def __init__(self, repo_id: str, endpoint: str, with_token: bool):
        hint = (f"check the repo id; if the repo is private, make sure your token has access to it"
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
        super().__init__(repo_id, message, "check the connection and run the command again "
                                           "(nothing was registered; blobs already stored are reused)")


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


class LicenseNotAcknowledgedError(ModelStoreError, PermissionError):
    exit_code = 2

    def __init__(self, repo_id: str, license: str | None):
        problem = (f"{repo_id} is published under the license {license!r}, which must be acknowledged "
                   "before import" if license else
                   f"{repo_id} declares no license, so its unknown terms must be acknowledged before import")
        super().__init__(problem,
                         "pass --yes to acknowledge it (or run the command in a terminal to be asked)")
        self.repo_id = repo_id
        self.license = license


class ModelLoadError(ModelStoreError, ValueError):
    """An imported model does not load, or its forward pass gives non-finite logits."""

    def __init__(self, model_id: str, reason: str):
        super().__init__(f"{model_id} does not pass the load check: {reason}",
                         "nothing was registered; the checkpoint may not match its config")
        self.model_id = model_id
        self.reason = reason


# --- models, configs and devices --------------------------------------------------------


class ConfigError(ModelStoreError, ValueError):
    """A run config file (TOML) is missing, unreadable, or has a bad or unknown key."""

    exit_code = 2

    def __init__(self, path: Path | str, message: str, hint: str | None = None):
        super().__init__(f"{path}: {message}", hint or "fix the config file (keys are listed in the README)")
        self.path = Path(path)


class DeviceUnavailableError(ModelStoreError, ValueError):
    exit_code = 2

    def __init__(self, device: str, reason: str):
        super().__init__(f"device {device!r} is not available: {reason}",
                         "use --device cpu (or device = \"auto\" to pick the best one present)")
        self.device = device


class TokenizerError(ModelStoreError, ValueError):
    """A tokenizer cannot be loaded, or does not fit the model it is used with."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint or "set tokenizer = \"<model name or folder>\" in the config")


class ModelCheckError(ModelStoreError, ValueError):
    """A model failed its smoke test (a forward pass with wrong-shaped or non-finite logits)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint or "the weights are probably damaged; "
                         "run `modelstore validate-registry`")


# --- training and checkpoints -------------------------------------------------------------


class CheckpointNotFoundError(ModelStoreError, LookupError):
    """``NAME@step-N`` names no checkpoint of the run that produced NAME."""

    def __init__(self, ref: str, reason: str, steps: list[int] | None = None):
        hint = (f"its run has checkpoints at step {', '.join(str(s) for s in steps)}" if steps
                else "`modelstore model-info NAME` lists a model's checkpoints")
        super().__init__(f"no checkpoint {ref!r}: {reason}", hint)
        self.ref = ref


class CheckpointGoneError(ModelStoreError, LookupError):
    """The checkpoint's manifest is kept (lineage) but gc has collected some of its blobs."""

    def __init__(self, ref: str, missing: int):
        super().__init__(
            f"checkpoint {ref!r} can no longer be loaded: gc removed {missing} of its blobs "
            "(only its manifest is kept, for lineage)",
            "pin the checkpoints you want to keep with `modelstore register NAME@step-N` "
            "before running gc",
        )
        self.ref = ref
        self.missing = missing


class ResumeError(ModelStoreError, ValueError):
    """``train --resume`` cannot continue the run as configured."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint or "run without --resume to start a new run under another output_name")


class TrainingInterrupted(ModelStoreError):
    """Ctrl-C during training: what was committed stays, the run can be resumed."""

    exit_code = 130

    def __init__(self, step: int, committed: str | None):
        where = (f"the last checkpoint is registered ({committed}); `train --resume` continues from it"
                 if committed else "no checkpoint had been saved yet; nothing was registered")
        super().__init__(f"training interrupted at step {step}", where)
        self.step = step
        self.committed = committed


class TrainingDivergedError(ModelStoreError, ArithmeticError):
    """The loss became NaN or infinite: continuing would only store garbage."""

    def __init__(self, step: int, value: float, committed: str | None):
        kept = f"; the last good checkpoint stays registered ({committed})" if committed else ""
        super().__init__(f"training diverged: the loss of step {step} is {value}{kept}",
                         "lower lr (or raise warmup_steps, or set grad_clip) and start a new run")
        self.step = step
