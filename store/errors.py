"""The store's errors, and what every error of the project shares.

Every error carries the name, digest or path it is about, subclasses the builtin that fits
(``LookupError``, ``OSError``, ``ValueError``), and says what went wrong and the next step.
A next step that is a command is a value (``Next("validate-registry", "--fix")``) inside the
hint's ``Text``; only ``cli/`` spells it as the command line to type, and ``cli.errors`` maps
every error to a message and an exit code in one table. Library code raises and never exits.

Each layer keeps its own errors beside its code: ``adapters.errors``, ``registry.errors``,
``registry.hub.errors``, ``training.errors``; all derive from ``ModelStoreError``.
"""

from __future__ import annotations

from pathlib import Path


class Next:
    """A next action as a value: one of the tool's commands and its arguments.

    ``str()`` gives it as the installed tool's name would (``modelstore gc``), for logs and
    tracebacks; the CLI spells it as the command line of the checkout that runs.
    """

    __slots__ = ("command", "args")

    def __init__(self, command: str, *args: str):
        self.command = command
        self.args = tuple(args)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Next) and (self.command, self.args) == (other.command, other.args)

    def __hash__(self) -> int:
        return hash((self.command, self.args))

    def __repr__(self) -> str:
        return "Next(" + ", ".join(repr(p) for p in (self.command, *self.args)) + ")"

    def __str__(self) -> str:
        return " ".join(("modelstore", self.command, *self.args))


class Text:
    """Words for the user with next actions among them: ``str`` parts and ``Next`` values.

    Library code builds messages that name a command as ``Text`` (concatenate with ``+``);
    plain strings stay plain. ``cli.errors.say`` renders either.
    """

    __slots__ = ("parts",)

    def __init__(self, *parts: str | Next | Text):
        flat: list[str | Next] = []
        for part in parts:
            for piece in (part.parts if isinstance(part, Text) else (part,)):
                if isinstance(piece, str) and flat and isinstance(flat[-1], str):
                    flat[-1] += piece
                elif piece != "":
                    flat.append(piece)
        self.parts: tuple[str | Next, ...] = tuple(flat)

    @property
    def actions(self) -> tuple[Next, ...]:
        return tuple(p for p in self.parts if isinstance(p, Next))

    def __add__(self, other: str | Next | Text) -> Text:
        return Text(self, other)

    def __radd__(self, other: str | Next | Text) -> Text:
        return Text(other, self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Text) and self.parts == other.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def __contains__(self, text: str) -> bool:
        return text in str(self)

    def __repr__(self) -> str:
        return f"Text{self.parts!r}"

    def __str__(self) -> str:
        return "".join(str(p) for p in self.parts)


Hint = str | Text

# The next actions the store's own errors name.
FIX = Next("validate-registry", "--fix")
VALIDATE = Next("validate-registry")


def words(*parts: str | Next | Text) -> Hint:
    """``parts`` joined: a ``Text`` where they name a next action, else a plain ``str``."""
    text = Text(*parts)
    return text if text.actions else str(text)


def text_of(error: BaseException) -> Hint:
    """What ``error`` says, with its next action kept as a value where it has one."""
    return words(error.text) if isinstance(error, ModelStoreError) else str(error)


class ModelStoreError(Exception):
    """Base of every error the CLI reports as one line (exit code ``exit_code``)."""

    exit_code = 1

    def __init__(self, message: str, hint: Hint | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def text(self) -> Text:
        """The error's one line: what went wrong, then the next step."""
        return Text(self.message, "; ", self.hint) if self.hint else Text(self.message)

    @property
    def next(self) -> tuple[Next, ...]:
        """The commands the hint names as next actions (none when it names none)."""
        return self.hint.actions if isinstance(self.hint, Text) else ()

    def __str__(self) -> str:
        return str(self.text)


class UsageError(ModelStoreError, ValueError):
    """The command line asked for something that cannot be done as asked."""

    exit_code = 2


# --- the store --------------------------------------------------------------------------


class StoreFormatError(ModelStoreError, ValueError):
    """``.modelstore/FORMAT`` is missing, unreadable, or of a version this code cannot use."""

    def __init__(self, path: Path, message: str, hint: Hint | None = None):
        super().__init__(message, hint)
        self.path = path


# Why a writer finds an object it has just written or reused gone before its commit.
REMOVED_IN_FLIGHT_HINT = Text("it was removed while this command ran (by `", Next("gc"), "` with a grace "
                              "period shorter than the write?); nothing was registered: run the command again")


class ObjectMissingError(ModelStoreError, LookupError):
    def __init__(self, digest: str, path: Path, hint: Hint | None = None):
        super().__init__(
            f"object {digest} is missing ({path})",
            hint or Text("run `", FIX, "` to restore it"),
        )
        self.digest = digest
        self.path = path


class CorruptObjectError(ModelStoreError, ValueError):
    def __init__(self, digest: str, path: Path, actual: str | None, detail: str = ""):
        what = detail or (f"its bytes hash to {actual}" if actual else "its bytes do not match")
        super().__init__(
            f"object {digest} is corrupt: {what} ({path})",
            Text("run `", FIX, "` to quarantine and restore it"),
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

    def __init__(self, path: Path | str, cause: OSError, *, hint: Hint | None = None,
                 committed: bool = False):
        import errno as _errno

        name = _errno.errorcode.get(cause.errno or 0, "error")
        if committed and hint is None:
            hint = Text("the change itself was made and stays, but may not survive a power failure; "
                        "free some disk space, then run `", VALIDATE, "`")
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

    def after_commit(self, hint: Hint | None = None) -> StoreIOError:
        """The same failure, raised by a step that ran after the command's commit point."""
        return StoreIOError(self.path, OSError(self.errno, self.strerror, self.filename), hint=hint,
                            committed=True)


def disk_full_error(path: Path | str, error: OSError) -> OSError:
    """A full disk (ENOSPC, EDQUOT) becomes one ``StoreIOError`` naming it and the path;
    any other error is returned as it is."""
    import errno as _errno

    if error.errno in (_errno.ENOSPC, _errno.EDQUOT) and not isinstance(error, StoreIOError):
        return StoreIOError(path, error)
    return error


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

    def __init__(self, path: Path | str, message: str, hint: Hint | None = None):
        super().__init__(message, hint)
        self.path = Path(path)
        self.filename = str(path)


class ManifestError(ModelStoreError, ValueError):
    """A manifest does not decode or does not describe a usable model version."""

    def __init__(self, digest: str, reason: str):
        super().__init__(
            f"manifest {digest} is unreadable: {reason}",
            Text("run `", VALIDATE, "` for a full report"),
        )
        self.digest = digest
        self.reason = reason
