"""The command line: click commands, the error -> message/exit-code table, all human text.

``app`` (the group, the reporter that prints status lines), ``errors`` (the one place the
project's errors become a line on stderr and an exit code, and where a next action becomes
a command), ``output`` (the one JSON renderer), one module per command group
(``import_cmd``, ``info_cmd``, ``maintenance_cmd``, ``training_cmd``) and the text they
print (``render``, ``maintenance_text``, ``training_text``).

May import every layer below: ``store``, ``adapters``, ``registry``, ``training``.
Commands import their library modules when they run, so ``list-models`` never loads torch.
"""

from cli.app import cli
from cli import export_cmd, import_cmd, info_cmd, maintenance_cmd, remote_cmd, training_cmd  # noqa: F401

__all__ = ["cli", "main"]


def main() -> None:
    """The ``modelstore`` console command (``pip install .``): the same commands as
    ``python main.py``."""
    from cli import errors

    errors.COMMAND_LINE = "modelstore"  # next steps are spelled as the command the user typed
    cli(prog_name="modelstore")
