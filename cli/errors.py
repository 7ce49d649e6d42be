"""The one place where the project's errors become a message on stderr and an exit code, and
where a next action (a ``Next`` value, as the library names it) becomes the command to type."""

from __future__ import annotations

import click

from store.errors import Hint, ModelStoreError, Next, Text


def fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(code)


def message(error: ModelStoreError) -> str:
    """The error's one line: what went wrong, then the next step."""
    return say(error.text)


def report(error: BaseException) -> None:
    """Print ``error`` as one line and exit with its code; anything else is re-raised."""
    if isinstance(error, ModelStoreError):
        fail(message(error), error.exit_code)
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        fail(f"{error.strerror or error}{where}; check the path and permissions "
             "(set MODELSTORE_DEBUG=1 for details)", 1)
    if isinstance(error, KeyboardInterrupt):
        fail("interrupted; nothing was registered (temp files are swept by gc)", 130)
    raise error


# The command line this checkout runs; the library names a next action as a ``Next`` value.
COMMAND_LINE = "python main.py"


def command(action: Next) -> str:
    """``action`` as the command to type."""
    return " ".join((COMMAND_LINE, action.command, *action.args))


def say(text: Hint) -> str:
    """``text`` with every next action in it written as the command to type."""
    if isinstance(text, Text):
        return "".join(part if isinstance(part, str) else command(part) for part in text.parts)
    return text
