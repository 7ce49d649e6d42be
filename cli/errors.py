"""The one place where the project's errors become a message on stderr and an exit code, and
where a next action (``modelstore gc``, as the library names it) becomes the command to type."""

from __future__ import annotations

import re

import click

from store.errors import ModelStoreError


def fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(code)


def message(error: ModelStoreError) -> str:
    """The error's one line: what went wrong, then the next step."""
    return spell(str(error))


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


# Library text names a next action as ``modelstore COMMAND ...`` (the installed tool's name);
# this is the one place that spells it as the command line this checkout runs.
_ACTION = re.compile(r"\bmodelstore (?=(?:import-model|list-models|model-info|lineage|du|delete-model|gc"
                     r"|validate-registry|train|register|generate|remote|push|pull)\b)")


def spell(text: str) -> str:
    """``text`` with every next action written as the command to type."""
    return _ACTION.sub("python main.py ", text)
