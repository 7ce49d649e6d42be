"""The commands that change or check the store as a whole: ``delete-model``,
``validate-registry [--fix]``, ``gc``."""

from __future__ import annotations

import click

from cli import app
from cli.app import CliReporter, cli, workspace
from cli.output import repair_doc, to_json, validation_doc
from store.errors import UsageError


@cli.command("delete-model")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--keep-view", is_flag=True,
              help="Keep the view models/NAME (its links dangle once gc frees the blobs they point at).")
@click.option("--delete-files", is_flag=True, hidden=True,
              help="Remove the view too: the default now; accepted for scripts written before.")
@click.pass_context
def delete_model_cmd(ctx, name, yes, keep_view, delete_files) -> None:
    """Remove a model's name from the registry and its view models/NAME; blobs go through gc."""
    if keep_view and delete_files:
        raise UsageError("--keep-view and --delete-files contradict each other", "pass one of them")
    from registry.ops import delete_model

    def confirm(entry, children) -> bool:
        if children:
            click.echo(f"warning: {', '.join(children)} {'was' if len(children) == 1 else 'were'} "
                       f"fine-tuned from {name!r}; their lineage stays readable", err=True)
        if yes:
            return True
        if not app.interactive():
            raise UsageError(f"deleting {name!r} needs confirmation", "pass --yes to delete without asking")
        return click.confirm(f"Delete model {name!r} ({entry.model_id})?", default=False, err=True)

    result = delete_model(workspace(ctx), name, delete_files=not keep_view, confirm=confirm,
                          on_wait=lambda: CliReporter().status("lock", "waiting for another modelstore writer"))
    if result.entry is None:  # an interrupted delete, finished now
        removed = "; removed what was left of its view" if result.view_removed else ""
        click.echo(f"{name} was already deleted{removed}; run `python main.py gc` to free its unshared blobs")
        return
    if result.view_removed:
        click.echo(f"deleted {name} and its view {result.entry.local_path}/; run `python main.py gc` to free "
                   "its unshared blobs")
        return
    click.echo(f"deleted {name}; its view {result.entry.local_path}/ was kept (--keep-view), but its links "
               "dangle once `python main.py gc` frees the blobs no other model shares; "
               f"`python main.py validate-registry --fix` moves it to the quarantine")


@cli.command("validate-registry")
@click.option("--fast", is_flag=True, help="Structural check only (presence, sizes); no re-hashing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--fix", is_flag=True, help="Repair what can be repaired: plan, show the plan, then execute.")
@click.option("--dry-run", is_flag=True, help="With --fix: show the plan and change nothing.")
@click.option("--yes", "-y", is_flag=True,
              help="With --fix: do not ask before steps that move or replace files.")
@click.option("--upstream", is_flag=True,
              help="Also rebuild every Hub model's files from the store and check them against the Hub's "
                   "sha256 (offline).")
@click.pass_context
def validate_registry_cmd(ctx, fast, as_json, fix, dry_run, yes, upstream) -> None:
    """Check the registry, manifests, objects and views (exit 1 on errors); --fix repairs."""
    from cli.maintenance_text import outcome_text, plan_text, validation_text

    if (dry_run or yes) and not fix:
        raise UsageError("--dry-run and --yes apply to --fix", "add --fix, or drop them")
    if upstream and (fix or fast):
        raise UsageError("--upstream checks, it does not repair or skip hashing", "drop --fix and --fast")
    if upstream:
        from registry.check.validate import validate
        from registry.export import verify_upstream

        report = validate(workspace(ctx), deep=True, reporter=CliReporter())
        checks = verify_upstream(workspace(ctx), reporter=CliReporter()) if report.ok else []
        if as_json:
            click.echo(to_json({**report.to_builtins(), "upstream": [
                {"model": c.model, "file": c.relpath, "hash": c.kind, "ok": c.problem is None,
                 "problem": c.problem} for c in checks]}))
        else:
            click.echo(validation_text(report))
            for c in checks:
                click.echo(f"{c.model}: {c.relpath}: " + (f"matches the Hub's {c.kind}" if c.problem is None
                                                          else f"DIFFERS: {c.problem}"))
        ctx.exit(0 if report.ok and all(c.problem is None for c in checks) else 1)
    if not fix:
        from registry.check.validate import validate

        report = validate(workspace(ctx), deep=not fast, reporter=CliReporter())
        click.echo(to_json(validation_doc(report)) if as_json else validation_text(report))
        ctx.exit(0 if report.ok else 1)

    def on_plan(report, plan) -> bool:
        if not as_json:
            click.echo(validation_text(report))
            click.echo(plan_text(plan))
        if dry_run or plan.empty or not plan.destructive or yes:
            return True
        if not app.interactive():
            raise UsageError("the repair moves or replaces files and needs confirmation",
                             "pass --yes to repair without asking (nothing was changed)")
        return click.confirm("Apply this repair?", default=False, err=True)

    from registry.repair.fix import repair

    result = repair(workspace(ctx), deep=not fast, dry_run=dry_run, on_plan=on_plan, reporter=CliReporter())
    text = to_json(repair_doc(result)) if as_json else outcome_text(result)
    if text:
        click.echo(text)
    ctx.exit(0 if result.ok else 1)


@cli.command("gc")
@click.option("--grace", default="1h", show_default=True,
              help="Keep unreachable objects, temp files and quarantined items younger than this "
                   "(0, 90s, 30m, 1h, 2d).")
@click.option("--dry-run", is_flag=True,
              help="List what would be removed and the bytes freed; remove nothing.")
@click.option("--remote", "remote_name", help="Collect on this remote: objects no remote ref reaches.")
@click.option("--break-lock", is_flag=True, help="With --remote: replace a stale (expired) gc lock.")
@click.pass_context
def gc_cmd(ctx, grace, dry_run, remote_name, break_lock) -> None:
    """Delete objects no registered model reaches, old temp files and old quarantined items."""
    from cli.maintenance_text import gc_text
    from registry.space.gc import collect_garbage
    from store.gc import parse_duration

    if remote_name:
        from cli.remote_cmd import remote_gc

        return remote_gc(ctx, remote_name, parse_duration(grace), dry_run, break_lock)
    if break_lock:
        raise UsageError("--break-lock applies to gc --remote", "add --remote NAME")
    ws = workspace(ctx)
    outcome = collect_garbage(ws, grace_s=parse_duration(grace), dry_run=dry_run, reporter=CliReporter())
    click.echo(gc_text(outcome, ws.root))
