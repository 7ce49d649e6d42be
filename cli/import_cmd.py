"""``import-model``: from a local folder or the Hugging Face Hub, with the prompts a terminal
gets (name conflict, license, token)."""

from __future__ import annotations

import click

from cli import app
from cli.app import CliReporter, cli, workspace


def _conflict_prompt(ws):
    def ask(name: str) -> str:
        from registry.ops import free_name

        other = free_name(ws, name)
        choice = click.prompt(
            f"A model named {name!r} already exists: overwrite it, rename (import as {other!r}) or cancel?",
            type=click.Choice(["overwrite", "rename", "cancel"]), default="cancel", show_choices=False,
            err=True,
        )
        if choice == "rename":
            click.echo(f"importing as {other!r}", err=True)
        return choice

    return ask


def _confirm_license(info) -> bool:
    from cli.render import license_prompt

    click.echo(license_prompt(info), err=True)
    return click.confirm("Do you acknowledge this license?", default=False, err=True)


def _ask_token(repo_id: str, page: str) -> str:
    hub = page[: -len(repo_id) - 1]
    click.echo(f"{repo_id} is gated: accept its conditions on {page}, then paste a token with access "
               f"(create one at {hub}/settings/tokens).", err=True)
    return click.prompt("Hugging Face token (input hidden; empty to cancel)", default="", hide_input=True,
                        show_default=False, err=True)


@cli.command("import-model")
@click.argument("source")
@click.option("--name", help="Name to register the model under (default: derived from SOURCE).")
@click.option("--revision", help="Hub branch, tag or commit (default: main).")
@click.option("--token", help="Hub token for gated or private repos (default: HF_TOKEN, then login).")
@click.option("--yes", "-y", is_flag=True, help="Acknowledge the license and confirm without asking.")
@click.option("--on-conflict", type=click.Choice(["overwrite", "rename", "cancel"]),
              help="What to do when NAME is taken (default: ask, or cancel without a terminal).")
@click.option("--trust-size-only", is_flag=True,
              help="Import files for which the Hub endpoint (a mirror) gives no hash, checking sizes only.")
@click.option("--connections", type=click.IntRange(min=1), metavar="N",
              help="Hub imports: connections at once, for parallel files and byte ranges "
                   "(default: MODELSTORE_HUB_CONNECTIONS, else 8).")
@click.option("--follow-links", is_flag=True,
              help="Local folders: read files that are links to places outside the folder.")
@click.option("--load-check", is_flag=True,
              help="Local folders: load the stored model and run a forward pass before registering it "
                   "(Hub imports always do).")
@click.pass_context
def import_model(ctx, source, name, revision, token, yes, on_conflict, trust_size_only, follow_links,
                 load_check, connections) -> None:
    """Import a model from a local folder or the Hugging Face Hub (repo id or URL)."""
    from registry.importer import import_model as run_import

    asking = app.interactive()
    ws = workspace(ctx)
    policy = on_conflict or (_conflict_prompt(ws) if asking else "cancel")
    result = run_import(ws, source, name=name, revision=revision, token=token,
                        assume_yes=yes, on_conflict=policy, reporter=CliReporter(),
                        confirm_license=_confirm_license if asking else None,
                        ask_token=_ask_token if asking else None, trust_size_only=trust_size_only,
                        follow_links=follow_links, load_check=load_check, connections=connections)
    from cli.render import import_summary

    click.echo(import_summary(result))
