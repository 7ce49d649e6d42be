"""modelstore's command line: ``python main.py COMMAND`` (the commands live in ``cli/``)."""

from cli import cli

if __name__ == "__main__":
    cli(prog_name="python main.py")
