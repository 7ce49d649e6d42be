"""The commands that only read: ``list-models``, ``model-info``, ``lineage``, ``du``.
None of them imports torch."""

from __future__ import annotations

import click

from cli.app import cli, workspace
from cli.output import lineage_doc, model_info_doc, to_json, usage_doc


@cli.command("list-models")
@click.option("--architecture", help="Only models of this architecture (config model_type).")
@click.option("--source", type=click.Choice(["huggingface", "local", "custom", "finetuned"]))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--remote", "remote_name", help="List the models on this remote instead.")
@click.pass_context
def list_models_cmd(ctx, architecture, source, as_json, remote_name) -> None:
    """List registered models, most recent first."""
    if remote_name:
        from cli.remote_cmd import list_remote_models

        return list_remote_models(ctx, remote_name, as_json)
    from cli.render import models_table
    from registry.ops import list_models

    entries = list_models(workspace(ctx), architecture=architecture, source=source)
    click.echo(to_json(entries) if as_json else models_table(entries))


@cli.command("model-info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with the manifest digest).")
@click.option("--remote", "remote_name", help="Show the model as it is on this remote.")
@click.pass_context
def model_info_cmd(ctx, name, as_json, remote_name) -> None:
    """Show everything known about one model: metadata, size on disk, lineage."""
    if remote_name:
        from cli.remote_cmd import remote_model_info

        return remote_model_info(ctx, name, remote_name, as_json)
    from cli.render import model_info_text
    from registry.info import model_info

    info = model_info(workspace(ctx), name)
    click.echo(to_json(model_info_doc(info)) if as_json else model_info_text(info))


@cli.command("lineage")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def lineage_cmd(ctx, name, as_json) -> None:
    """Show the chain base -> fine-tunes -> NAME, and the models fine-tuned from NAME."""
    from cli.render import lineage_text
    from registry.lineage import children_of, lineage

    ws = workspace(ctx)
    nodes = lineage(ws, name)
    children = children_of(ws, name)
    click.echo(to_json(lineage_doc(nodes, children)) if as_json else lineage_text(name, nodes, children))


@cli.command("du")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def du_cmd(ctx, as_json) -> None:
    """Disk usage per model and for the store, with the dedup ratio."""
    from cli.render import usage_text
    from registry.space.du import disk_usage

    usage = disk_usage(workspace(ctx))
    click.echo(to_json(usage_doc(usage)) if as_json else usage_text(usage))
