"""The click group every command joins, and what every command shares: the workspace,
whether a terminal can be asked, and the reporter that prints status lines on stderr.

Errors become a message and an exit code in ``ModelStoreGroup.invoke`` (through
``cli.errors``); ``MODELSTORE_DEBUG=1`` shows the traceback instead. Status lines go to
stderr, results to stdout, so stdout stays usable by scripts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cli import errors
from cli.version import __version__
from registry.report import NoProgress, Reporter
from store.errors import Hint, ModelStoreError


def quiet() -> bool:
    """``--quiet`` was given: no status lines and no progress bars (results and errors stay)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and (ctx.find_root().obj or {}).get("quiet"))


class CliReporter(Reporter):
    def __init__(self) -> None:
        self.quiet = quiet()

    def status(self, component: str, message: Hint) -> None:
        if not self.quiet:
            click.echo(f"  {component:<10} {errors.say(message)}", err=True)

    def warning(self, message: Hint) -> None:
        click.echo(f"warning: {errors.say(message)}", err=True)

    def progress_bar(self) -> type | None:
        # huggingface_hub's bar: percentage, speed, time left, total size; it stays quiet when
        # stderr is not a terminal or HF_HUB_DISABLE_PROGRESS_BARS=1 (TQDM_POSITION=-1 forces it).
        if self.quiet:
            return None
        from huggingface_hub.utils import tqdm

        return tqdm

    def progress(self, desc: str, total: int, unit: str = "B"):
        """The same bar for local work (import, re-hash, gc), drawn as huggingface_hub draws its
        own: only on a terminal (tqdm's ``disable=None``), unless HF_HUB_DISABLE_PROGRESS_BARS=1;
        TQDM_POSITION=-1 forces it. Off a terminal, huggingface_hub (and with it tqdm and
        asyncio, 30 ms) is not even imported: a re-import's whole work costs less."""
        forced = os.environ.get("TQDM_POSITION") == "-1"
        if not forced and not sys.stderr.isatty():
            return NoProgress()
        bar = self.progress_bar()
        if bar is None:
            return super().progress(desc, total, unit)
        return bar(total=total, desc=f"  {desc}", unit=unit, unit_scale=unit == "B", leave=False,
                   file=sys.stderr, dynamic_ncols=True, disable=False if forced else None)


class ModelStoreGroup(click.Group):
    """The one place where the project's errors become a message and an exit code."""

    def invoke(self, ctx: click.Context):
        if os.environ.get("MODELSTORE_DEBUG") == "1":
            return super().invoke(ctx)
        try:
            return super().invoke(ctx)
        except (ModelStoreError, OSError, KeyboardInterrupt) as e:
            errors.report(e)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def workspace(ctx: click.Context):
    from registry.workspace import Workspace

    return Workspace.open(ctx.obj["root"])


@click.group(cls=ModelStoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), envvar="MODELSTORE_ROOT",
              help="Workspace holding .modelstore/ and models/ (env MODELSTORE_ROOT; default: .).")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress bars or status lines (results, warnings and errors still print).")
@click.version_option(__version__, "--version", package_name="modelstore", message="modelstore %(version)s")
@click.pass_context
def cli(ctx: click.Context, root: Path | None, quiet: bool) -> None:
    """A local, content-addressed store for model weights."""
    ctx.obj = {"root": root, "quiet": quiet}
