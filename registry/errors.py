"""The registry's errors: names, conflicts, views, registry.json, maintenance, load checks,
licenses and checkpoints. The Hub's own errors are in ``registry.hub.errors``."""

from __future__ import annotations

from pathlib import Path

from store.errors import FIX, VALIDATE, Hint, ModelStoreError, Next, Text


class Aborted(ModelStoreError):
    """The user declined a confirmation; nothing was changed."""

    exit_code = 1


class InvalidNameError(ModelStoreError, ValueError):
    exit_code = 2

    def __init__(self, name: str, rule: str):
        super().__init__(f"invalid model name {name!r}: {rule}", "choose another name with --name")
        self.name = name
        self.rule = rule


class ModelNotFoundError(ModelStoreError, LookupError):
    def __init__(self, name: str, suggestions: list[str] | None = None):
        hint: Hint = Text("run `", Next("list-models"), "` to see the registered names")
        if suggestions:
            hint = "did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
        super().__init__(f"no model named {name!r} is registered", hint)
        self.name = name


class ModelExistsError(ModelStoreError, FileExistsError):
    def __init__(self, name: str, message: str | None = None, hint: Hint | None = None):
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
            Text("run `", FIX, "` to rebuild it"),
        )
        self.name = name
        self.path = path


class RegistryError(ModelStoreError, ValueError):
    """``models/registry.json`` cannot be read as a registry of this schema."""

    def __init__(self, path: Path, reason: str, hint: Hint | None = None):
        super().__init__(
            f"{path} is damaged: {reason}",
            hint or Text("run `", FIX, "` to recover it"),
        )
        self.path = path
        self.reason = reason


class StoreChangedError(ModelStoreError):
    """The store changed between a maintenance plan and its execution; nothing more was done."""

    def __init__(self, what: str):
        super().__init__(f"{what} changed while the repair was being planned",
                         Text("run `", FIX, "` again"))
        self.what = what


class GcAbortedError(ModelStoreError):
    """gc refuses to delete anything while it cannot know everything that is reachable."""

    def __init__(self, problems: list[str]):
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        super().__init__(
            f"gc aborted, nothing was deleted: {shown}",
            Text("run `", VALIDATE, "` and repair or delete the models it names"),
        )
        self.problems = problems


class ModelLoadError(ModelStoreError, ValueError):
    """An imported model does not load, or its forward pass gives non-finite logits."""

    def __init__(self, model_id: str, reason: str):
        super().__init__(f"{model_id} does not pass the load check: {reason}",
                         "nothing was registered; the checkpoint may not match its config")
        self.model_id = model_id
        self.reason = reason


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


class CheckpointNotFoundError(ModelStoreError, LookupError):
    """``NAME@step-N`` names no checkpoint of the run that produced NAME."""

    def __init__(self, ref: str, reason: str, steps: list[int] | None = None):
        hint: Hint = (f"its run has checkpoints at step {', '.join(str(s) for s in steps)}" if steps
                      else Text("`", Next("model-info", "NAME"), "` lists a model's checkpoints"))
        super().__init__(f"no checkpoint {ref!r}: {reason}", hint)
        self.ref = ref


class CheckpointGoneError(ModelStoreError, LookupError):
    """The checkpoint's manifest is kept (lineage) but gc has collected some of its blobs."""

    def __init__(self, ref: str, missing: int):
        super().__init__(
            f"checkpoint {ref!r} can no longer be loaded: gc removed {missing} of its blobs "
            "(only its manifest is kept, for lineage)",
            Text("pin the checkpoints you want to keep with `", Next("register", "NAME@step-N"),
                 "` before running gc"),
        )
        self.ref = ref
        self.missing = missing
