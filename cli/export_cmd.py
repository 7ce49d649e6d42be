"""``export-model``: a model as a standalone folder of real files."""

from __future__ import annotations

from pathlib import Path

import click

from cli.app import CliReporter, cli, workspace


def _size(value: str) -> int:
    from huggingface_hub.serialization._base import parse_size_to_int

    try:
        return parse_size_to_int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a size such as 5GB or 500MB") from None


@cli.command("export-model")
@click.argument("name")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--max-shard-size", default="5GB", show_default=True,
              help="Largest weight file when the weights are written as new shards (trained models).")
@click.pass_context
def export_model_cmd(ctx, name, dest, max_shard_size) -> None:
    """Write model NAME into DEST (new or empty) as real files: an imported model byte for byte
    as upstream, checked against the Hub's hashes; a trained one as save_pretrained shards it."""
    from registry.export import export_model

    result = export_model(workspace(ctx), name, dest, max_shard_size=_size(max_shard_size),
                          reporter=CliReporter())
    how = ("byte for byte as upstream" if result.exact else
           f"weights regrouped into new shards ({result.regrouped})" if result.regrouped else
           "weights as save_pretrained shards them")
    checked = f"; {len(result.verified)} checked against the Hub's sha256 or git blob id" if result.verified else ""
    click.echo(f"exported {name} to {result.folder}: {len(result.files)} files, {result.total_bytes:,} bytes, "
               f"{how}{checked}")
