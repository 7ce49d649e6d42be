"""The project's errors: one small hierarchy, shared by every layer.

Every error carries the name, digest or path it is about, subclasses the builtin that fits
(``LookupError``, ``OSError``, ``ValueError``), and renders as one line that names the
problem and the next step. ``main.py`` maps them to a message and an exit code in one place;
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


class ObjectMissingError(ModelStoreError, LookupError):
    def __init__(self, digest: str, path: Path):
        super().__init__(
            f"object {digest} is missing ({path})",
            "run `python main.py validate-registry --fix` to restore it",
        )
        self.digest = digest
        self.path = path


class CorruptObjectError(ModelStoreError, ValueError):
    def __init__(self, digest: str, path: Path, actual: str | None, detail: str = ""):
        what = detail or (f"its bytes hash to {actual}" if actual else "its bytes do not match")
        super().__init__(
            f"object {digest} is corrupt: {what} ({path})",
            "run `python main.py validate-registry --fix` to quarantine and restore it",
        )
        self.digest = digest
        self.path = path
        self.actual = actual


class StoreIOError(ModelStoreError, OSError):
    """A filesystem operation of the store failed (disk full, permissions, ...)."""

    def __init__(self, path: Path | str, cause: OSError):
        import errno as _errno

        name = _errno.errorcode.get(cause.errno or 0, "error")
        hint = {
            _errno.ENOSPC: "free some disk space and run the command again (nothing was registered)",
            _errno.EDQUOT: "free some quota and run the command again (nothing was registered)",
            _errno.EACCES: "check the permissions of the store folder",
            _errno.EROFS: "the store is on a read-only filesystem",
        }.get(cause.errno or 0, "check the path and run the command again")
        super().__init__(f"{name}: {cause.strerror or cause} at {path}", hint)
        self.errno = cause.errno
        self.strerror = cause.strerror
        self.filename = str(path)
        self.path = Path(path)


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
            "run `python main.py validate-registry` for a full report",
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
        hint = "run `python main.py list-models` to see the registered names"
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
            "run `python main.py validate-registry --fix` to rebuild it",
        )
        self.name = name
        self.path = path


class RegistryError(ModelStoreError, ValueError):
    """``models/registry.json`` cannot be read as a registry of this schema."""

    def __init__(self, path: Path, reason: str, hint: str | None = None):
        super().__init__(
            f"{path} is damaged: {reason}",
            hint or "run `python main.py validate-registry --fix` to recover it",
        )
        self.path = path
        self.reason = reason


class UnsupportedArchitectureError(ModelStoreError, ValueError):
    def __init__(self, model_type: str | None, supported: list[str], where: str = ""):
        got = repr(model_type) if model_type else "no model_type"
        super().__init__(
            f"unsupported architecture {got}{where}",
            "supported: " + ", ".join(supported),
        )
        self.model_type = model_type
        self.supported = supported


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
                         "run `python main.py validate-registry`")
