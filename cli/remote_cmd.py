"""Remotes: ``remote add|list|remove``, ``push``, ``pull``, and the ``--remote`` side of
``list-models``, ``model-info`` and ``gc`` (those commands call in here)."""

from __future__ import annotations

import click

from cli.app import CliReporter, cli, workspace
from cli.output import to_json


@cli.group("remote")
def remote_group() -> None:
    """Configure remotes (s3://BUCKET/PREFIX or file:///PATH) to push to and pull from."""


@remote_group.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--endpoint-url", help="An S3-compatible server's URL (default: AWS, or $AWS_ENDPOINT_URL).")
@click.option("--default", "make_default", is_flag=True, help="Use it when --remote is not given.")
@click.pass_context
def remote_add_cmd(ctx, name, url, endpoint_url, make_default) -> None:
    """Add a remote. Credentials are never stored: they come from the AWS environment or profile."""
    from registry.remote.config import add_remote, read_config

    config = add_remote(workspace(ctx), name, url, endpoint_url, make_default)
    default = " (default)" if read_config(workspace(ctx)).default == name else ""
    click.echo(f"added remote {name}: {config.url}{default}")


@remote_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def remote_list_cmd(ctx, as_json) -> None:
    """List the configured remotes."""
    from registry.remote.config import read_config

    doc = read_config(workspace(ctx))
    if as_json:
        click.echo(to_json(doc))
        return
    if not doc.remotes:
        click.echo("no remotes (add one with `python main.py remote add NAME URL`)")
    for name, config in sorted(doc.remotes.items()):
        extra = f"  endpoint {config.endpoint_url}" if config.endpoint_url else ""
        mark = "  (default)" if doc.default == name else ""
        click.echo(f"{name}  {config.url}{extra}{mark}")


@remote_group.command("remove")
@click.argument("name")
@click.pass_context
def remote_remove_cmd(ctx, name) -> None:
    """Forget a remote (nothing on the remote is touched)."""
    from registry.remote.config import remove_remote

    config = remove_remote(workspace(ctx), name)
    click.echo(f"removed remote {name} ({config.url})")


@cli.command("push")
@click.argument("name")
@click.option("--remote", "remote_name", help="The remote (default: the default remote).")
@click.option("--all-versions", is_flag=True, help="Also send the weights of every ancestor version held here.")
@click.option("--force", is_flag=True, help="Replace the remote's version even if it is not an ancestor.")
@click.pass_context
def push_cmd(ctx, name, remote_name, all_versions, force) -> None:
    """Send a model (its missing blobs, its manifests, then its name) to a remote."""
    from registry.remote.config import open_remote
    from registry.remote.push import push
    from registry.report import human_bytes

    ws = workspace(ctx)
    remote = open_remote(ws, remote_name)
    r = push(ws, remote, name, all_versions=all_versions, force=force, reporter=CliReporter())
    ref = {"created": "created", "moved": "moved", "unchanged": "already up to date"}[r.ref]
    click.echo(f"pushed {name} ({r.manifest[:12]}) to {remote.name}: {r.objects_sent} objects sent "
               f"({human_bytes(r.bytes_sent)}), {r.objects_present} already there, "
               f"{r.manifests_sent} manifests; ref {ref}")


@cli.command("pull")
@click.argument("name")
@click.option("--remote", "remote_name", help="The remote (default: the default remote).")
@click.option("--on-conflict", type=click.Choice(["overwrite", "rename", "cancel"]), default="cancel",
              show_default=True, help="If NAME is registered here at a version the remote's does not descend from.")
@click.pass_context
def pull_cmd(ctx, name, remote_name, on_conflict) -> None:
    """Fetch a model from a remote: only the blobs this store lacks, each verified."""
    from registry.remote.config import open_remote
    from registry.remote.pull import pull
    from registry.report import human_bytes

    ws = workspace(ctx)
    remote = open_remote(ws, remote_name)
    r = pull(ws, remote, name, on_conflict=on_conflict, reporter=CliReporter())
    registered = r.entry.model_name if r.entry else name
    click.echo(f"pulled {registered} ({r.manifest[:12]}) from {remote.name}: {r.objects_fetched} objects fetched "
               f"({human_bytes(r.bytes_fetched)}), {r.objects_present} already here; view models/{registered}")


def list_remote_models(ctx, remote_name: str, as_json: bool) -> None:
    from registry.remote.browse import list_remote
    from registry.remote.config import open_remote

    remote = open_remote(workspace(ctx), remote_name)
    models = list_remote(remote)
    if as_json:
        click.echo(to_json([{"name": m.name, "problem": m.problem,
                             **({} if m.ref is None else __import__("msgspec").to_builtins(m.ref))}
                            for m in models]))
        return
    rows = [("NAME", "MODEL ID", "ARCHITECTURE", "SOURCE", "PUSHED", "VERSION")]
    for m in models:
        if m.ref is None:
            rows.append((m.name, f"(unreadable: {m.problem})", "", "", "", ""))
        else:
            r = m.ref
            rows.append((m.name, r.model_id, r.architecture_type, r.source, r.pushed_at, r.manifest[:12]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    noun = "model" if len(models) == 1 else "models"
    if not models:
        click.echo(f"0 models on {remote.name}")
        return
    click.echo("\n".join(lines) + f"\n{len(models)} {noun} on {remote.name}")


def remote_model_info(ctx, name: str, remote_name: str, as_json: bool) -> None:
    from registry.remote.browse import remote_model_info as info_of
    from registry.remote.config import open_remote
    from registry.report import human_bytes

    info = info_of(workspace(ctx), open_remote(workspace(ctx), remote_name), name)
    if as_json:
        click.echo(to_json(info))
        return
    lines = [
        f"{info.name} on {info.remote} ({info.url})",
        f"  version        {info.manifest}",
        f"  model id       {info.model_id}",
        f"  architecture   {info.architecture_type}",
        f"  source         {info.source}",
        f"  license        {info.license or 'none declared'}",
        f"  parameters     {info.params:,}",
        f"  files/tensors  {info.files} files, {info.tensors} tensors, {human_bytes(info.total_bytes)}",
        f"  pushed         {info.ref.pushed_at} by {info.ref.pushed_by}",
        f"  fine-tuned from {info.ref.fine_tuned_from}" if info.ref.fine_tuned_from else None,
        f"  parents        {', '.join(p[:12] for p in info.parents)}" if info.parents else None,
        f"  a pull fetches {info.missing_here} objects ({human_bytes(info.missing_bytes)}); the rest is here",
    ]
    click.echo("\n".join(line for line in lines if line))


def remote_gc(ctx, remote_name: str, grace_s: float, dry_run: bool, break_lock: bool) -> None:
    from registry.remote.config import open_remote
    from registry.remote.gc import remote_gc as collect
    from registry.report import human_bytes

    result = collect(open_remote(workspace(ctx), remote_name), grace_s=grace_s, dry_run=dry_run,
                     break_lock=break_lock, reporter=CliReporter())
    verb = "would delete" if dry_run else "deleted"
    for digest, size in result.deleted if dry_run else []:
        click.echo(f"  objects/{digest[:2]}/{digest[2:]}  {human_bytes(size)}")
    click.echo(f"{result.remote}: {verb} {len(result.deleted)} objects ({human_bytes(result.bytes_freed)}); "
               f"kept {result.kept} reachable from {result.refs} refs and {result.kept_young} younger than the grace")
