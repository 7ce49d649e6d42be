"""The training layer's errors: run configs, tokenizers, resuming, interrupted or diverged runs."""

from __future__ import annotations

from pathlib import Path

from store.errors import Hint, ModelStoreError


class ConfigError(ModelStoreError, ValueError):
    """A run config file (TOML) is missing, unreadable, or has a bad or unknown key."""

    exit_code = 2

    def __init__(self, path: Path | str, message: str, hint: str | None = None):
        super().__init__(f"{path}: {message}", hint or "fix the config file (keys are listed in the README)")
        self.path = Path(path)


class TokenizerError(ModelStoreError, ValueError):
    """A tokenizer cannot be loaded, or does not fit the model it is used with."""

    def __init__(self, message: str, hint: Hint | None = None):
        super().__init__(message, hint or "set tokenizer = \"<model name or folder>\" in the config")


class ResumeError(ModelStoreError, ValueError):
    """``train --resume`` cannot continue the run as configured."""

    exit_code = 2

    def __init__(self, message: str, hint: Hint | None = None):
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
