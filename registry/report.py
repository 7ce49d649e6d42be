"""How library code tells the user what it is doing, without printing or exiting itself.

Long operations take a ``Reporter``; the CLI passes one that writes status lines to
stderr, tests pass one that records them, and the default says nothing.
"""

from __future__ import annotations

from typing import Any

from store.errors import Hint


class Reporter:
    """Receives progress of a long operation. The base class ignores everything."""

    def status(self, component: str, message: Hint) -> None:
        """One line about a step or component (weights, config, tokenizer, verify, ...)."""

    def warning(self, message: Hint) -> None:
        """Something the user should know that did not stop the operation."""

    def progress_bar(self) -> type | None:
        """A tqdm class for byte progress bars of downloads, or None for no bars.

        Downloads run through huggingface_hub, which drives the bar (percentage, speed, time
        remaining, total size); the CLI returns huggingface_hub's own ``tqdm``.
        """
        return None

    def progress(self, desc: str, total: int, unit: str = "B") -> Any:
        """A bar for one long step (import, re-hash, gc): ``update(n)`` as work is done, then
        ``close()`` (or use it as a context manager). Bytes show with rate and time left.

        Drawn with ``progress_bar()``'s class; the base class draws nothing."""
        bar = self.progress_bar()
        if bar is None:
            return NoProgress()
        return bar(total=total, desc=desc, unit=unit, unit_scale=unit == "B", leave=False)


class NoProgress:
    """A progress bar that shows nothing."""

    def update(self, n: float = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


NullReporter = Reporter


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``1 checkpoint``, ``2 checkpoints``, ``0 items``."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"


class RecordingReporter(Reporter):
    """Keeps every line, for tests and for callers that show them later."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, Hint]] = []

    def status(self, component: str, message: Hint) -> None:
        self.lines.append((component, message))

    def warning(self, message: Hint) -> None:
        self.lines.append(("warning", message))


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
