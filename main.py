"""modelstore's command line: ``python main.py COMMAND``.

Each command parses its arguments, calls one library function and prints the result.
Errors are mapped to one line on stderr and an exit code in one place,
``ModelStoreGroup.invoke``; ``MODELSTORE_DEBUG=1`` shows the traceback instead.
Status lines go to stderr, results to stdout, so stdout stays usable by scripts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from registry.report import Reporter
from store.errors import ModelStoreError, UsageError


class CliReporter(Reporter):
    def status(self, component: str, message: str) -> None:
        click.echo(f"  {component:<10} {message}", err=True)

    def warning(self, message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    def progress_bar(self) -> type | None:
        # huggingface_hub's bar: percentage, speed, time left, total size; it stays quiet when
        # stderr is not a terminal or HF_HUB_DISABLE_PROGRESS_BARS=1 (TQDM_POSITION=-1 forces it).
        from huggingface_hub.utils import tqdm

        return tqdm


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(code)


class ModelStoreGroup(click.Group):
    """The one place where the project's errors become a message and an exit code."""

    def invoke(self, ctx: click.Context):
        if os.environ.get("MODELSTORE_DEBUG") == "1":
            return super().invoke(ctx)
        try:
            return super().invoke(ctx)
        except ModelStoreError as e:
            _fail(str(e), e.exit_code)
        except OSError as e:
            where = f" ({e.filename})" if e.filename else ""
            _fail(f"{e.strerror or e}{where}; check the path and permissions "
                  "(set MODELSTORE_DEBUG=1 for details)", 1)
        except KeyboardInterrupt:
            _fail("interrupted; nothing was registered (temp files are swept by gc)", 130)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def workspace(ctx: click.Context):
    from registry.workspace import Workspace

    return Workspace.open(ctx.obj["root"])


@click.group(cls=ModelStoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), envvar="MODELSTORE_ROOT",
              help="Workspace holding .modelstore/ and models/ (env MODELSTORE_ROOT; default: .).")
@click.pass_context
def cli(ctx: click.Context, root: Path | None) -> None:
    """A local, content-addressed store for model weights."""
    ctx.obj = {"root": root}


# --- import ------------------------------------------------------------------------------


def _ask_conflict(name: str) -> str:
    return click.prompt(
        f"A model named {name!r} already exists. overwrite, rename or cancel?",
        type=click.Choice(["overwrite", "rename", "cancel"]), default="cancel", err=True,
    )


def _confirm_license(info) -> bool:
    from registry.render import license_prompt

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
@click.pass_context
def import_model(ctx, source, name, revision, token, yes, on_conflict) -> None:
    """Import a model from a local folder or the Hugging Face Hub (repo id or URL)."""
    from registry.importer import import_model as run_import

    asking = interactive()
    policy = on_conflict or (_ask_conflict if asking else "cancel")
    result = run_import(workspace(ctx), source, name=name, revision=revision, token=token,
                        assume_yes=yes, on_conflict=policy, reporter=CliReporter(),
                        confirm_license=_confirm_license if asking else None,
                        ask_token=_ask_token if asking else None)
    from registry.render import import_summary

    click.echo(import_summary(result))


# --- reading -----------------------------------------------------------------------------


@cli.command("list-models")
@click.option("--architecture", help="Only models of this architecture (config model_type).")
@click.option("--source", type=click.Choice(["huggingface", "local", "custom", "finetuned"]))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_models_cmd(ctx, architecture, source, as_json) -> None:
    """List registered models, most recent first."""
    from registry.ops import list_models
    from registry.render import models_table, to_json

    entries = list_models(workspace(ctx), architecture=architecture, source=source)
    click.echo(to_json(entries) if as_json else models_table(entries))


@cli.command("model-info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with the manifest digest).")
@click.pass_context
def model_info_cmd(ctx, name, as_json) -> None:
    """Show everything known about one model: metadata, size on disk, lineage."""
    from registry.info import model_info
    from registry.render import model_info_text, to_json

    info = model_info(workspace(ctx), name)
    click.echo(to_json(info.to_builtins()) if as_json else model_info_text(info))


@cli.command("lineage")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def lineage_cmd(ctx, name, as_json) -> None:
    """Show the chain base -> fine-tunes -> NAME, and the models fine-tuned from NAME."""
    from registry.lineage import children_of, lineage
    from registry.render import lineage_text, to_json

    ws = workspace(ctx)
    nodes = lineage(ws, name)
    children = children_of(ws, name)
    click.echo(to_json({"lineage": [n.__dict__ for n in nodes], "children": children}) if as_json
               else lineage_text(name, nodes, children))


@cli.command("du")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def du_cmd(ctx, as_json) -> None:
    """Disk usage per model and for the store, with the dedup ratio."""
    from registry.render import to_json, usage_text
    from registry.space.du import disk_usage

    usage = disk_usage(workspace(ctx))
    click.echo(to_json({**usage.__dict__, "dedup_ratio": usage.dedup_ratio}) if as_json else usage_text(usage))


# --- deleting ----------------------------------------------------------------------------


@cli.command("delete-model")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--delete-files", is_flag=True, help="Also remove the view models/NAME (blobs go only through gc).")
@click.pass_context
def delete_model_cmd(ctx, name, yes, delete_files) -> None:
    """Remove a model's name from the registry."""
    from registry.ops import delete_model

    def confirm(entry, children) -> bool:
        if children:
            click.echo(f"warning: {', '.join(children)} {'was' if len(children) == 1 else 'were'} "
                       f"fine-tuned from {name!r}; their lineage stays readable", err=True)
        if yes:
            return True
        if not interactive():
            raise UsageError(f"deleting {name!r} needs confirmation", "pass --yes to delete without asking")
        return click.confirm(f"Delete model {name!r} ({entry.model_id})?", default=False, err=True)

    result = delete_model(workspace(ctx), name, delete_files=delete_files, confirm=confirm)
    if result.entry is None:  # an interrupted delete, finished now
        removed = "; removed what was left of its view" if result.view_removed else ""
        click.echo(f"{name} was already deleted{removed}; run `python main.py gc` to free its unshared blobs")
        return
    kept = "" if result.view_removed else f"; its view {result.entry.local_path}/ was kept (--delete-files removes it)"
    click.echo(f"deleted {name}{kept}; run `python main.py gc` to free its unshared blobs")


# --- maintenance -------------------------------------------------------------------------


@cli.command("validate-registry")
@click.option("--fast", is_flag=True, help="Structural check only (presence, sizes); no re-hashing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--fix", is_flag=True, help="Repair what can be repaired: plan, show the plan, then execute.")
@click.option("--dry-run", is_flag=True, help="With --fix: show the plan and change nothing.")
@click.option("--yes", "-y", is_flag=True,
              help="With --fix: do not ask before steps that move or replace files.")
@click.pass_context
def validate_registry_cmd(ctx, fast, as_json, fix, dry_run, yes) -> None:
    """Check the registry, manifests, objects and views (exit 1 on errors); --fix repairs."""
    from registry.render import to_json
    from registry.render_maintenance import outcome_text, plan_text, repair_builtins, validation_text

    if (dry_run or yes) and not fix:
        raise UsageError("--dry-run and --yes apply to --fix", "add --fix, or drop them")
    if not fix:
        from registry.check.validate import validate

        report = validate(workspace(ctx), deep=not fast, reporter=CliReporter())
        click.echo(to_json(report.to_builtins()) if as_json else validation_text(report))
        ctx.exit(0 if report.ok else 1)

    def on_plan(report, plan) -> bool:
        if not as_json:
            click.echo(validation_text(report))
            click.echo(plan_text(plan))
        if dry_run or plan.empty or not plan.destructive or yes:
            return True
        if not interactive():
            raise UsageError("the repair moves or replaces files and needs confirmation",
                             "pass --yes to repair without asking (nothing was changed)")
        return click.confirm("Apply this repair?", default=False, err=True)

    from registry.repair.fix import repair

    result = repair(workspace(ctx), deep=not fast, dry_run=dry_run, on_plan=on_plan, reporter=CliReporter())
    text = to_json(repair_builtins(result)) if as_json else outcome_text(result)
    if text:
        click.echo(text)
    ctx.exit(0 if result.ok else 1)


@cli.command("gc")
@click.option("--grace", default="1h", show_default=True,
              help="Keep unreachable objects and temp files younger than this (0, 90s, 30m, 1h, 2d).")
@click.option("--dry-run", is_flag=True,
              help="List what would be removed and the bytes freed; remove nothing.")
@click.pass_context
def gc_cmd(ctx, grace, dry_run) -> None:
    """Delete objects no registered model reaches, and old temp files."""
    from registry.space.gc import collect_garbage
    from registry.render_maintenance import gc_text
    from store.gc import parse_duration

    ws = workspace(ctx)
    outcome = collect_garbage(ws, grace_s=parse_duration(grace), dry_run=dry_run, reporter=CliReporter())
    click.echo(gc_text(outcome, ws.root))


# --- training ----------------------------------------------------------------------------------


def _train_reporter():
    """Status lines on stderr, plus a progress bar (a line per tenth of the run without a terminal)."""
    from training.render import checkpoint_line, eval_line, progress_line, progress_postfix
    from training.train import TrainReporter

    class CliTrainReporter(CliReporter, TrainReporter):
        def __init__(self):
            self.bar = None
            self.tty = sys.stderr.isatty() and os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") != "1"

        def _say(self, component: str, message: str) -> None:
            line = f"  {component:<10} {message}"
            if self.bar is not None:
                self.bar.write(line, file=sys.stderr)  # above the bar, which is redrawn below it
            else:
                click.echo(line, err=True)

        def on_step(self, state, max_steps, tokens_per_s) -> None:
            if self.tty:
                if self.bar is None:
                    from huggingface_hub.utils import tqdm

                    self.bar = tqdm(total=max_steps, initial=state.step - 1, desc="  train", unit="step",
                                    file=sys.stderr, dynamic_ncols=True)
                self.bar.set_postfix_str(progress_postfix(state, tokens_per_s), refresh=False)
                self.bar.update(1)
                if state.step == max_steps:
                    self.bar.close()
                    self.bar = None
            elif state.step % max(1, max_steps // 10) == 0 or state.step == max_steps:
                self._say("train", progress_line(state, max_steps, tokens_per_s))

        def on_eval(self, state) -> None:
            self._say("eval", eval_line(state))

        def on_checkpoint(self, saved) -> None:
            self._say("checkpoint", checkpoint_line(saved))

    return CliTrainReporter


@cli.command("train")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Run config (TOML): model_name (empty: the custom Transformer from scratch), data, "
              "freeze, output_name, ... (see configs/ and the README).")
@click.option("--resume", is_flag=True,
              help="Continue the run registered as output_name from its last checkpoint, exactly.")
@click.pass_context
def train_cmd(ctx, config_path, resume) -> None:
    """Train from scratch or fine-tune; checkpoints go into the store as they are saved."""
    from training.render import train_summary
    from training.train import train

    reporter = _train_reporter()()
    try:
        result = train(workspace(ctx), config_path, resume=resume, reporter=reporter)
    finally:
        if reporter.bar is not None:
            reporter.bar.close()
    click.echo(train_summary(result))


@cli.command("register")
@click.argument("checkpoint")
@click.option("--name", help="Name to register it under (default: NAME-step-N).")
@click.option("--on-conflict", type=click.Choice(["overwrite", "rename", "cancel"]), default="cancel",
              show_default=True, help="What to do when the name is taken.")
@click.pass_context
def register_cmd(ctx, checkpoint, name, on_conflict) -> None:
    """Give a training checkpoint (NAME@step-N) a name of its own, so gc keeps it."""
    from registry.checkpoints import register_checkpoint

    entry = register_checkpoint(workspace(ctx), checkpoint, name, on_conflict=on_conflict)
    click.echo(f"registered {entry.model_name} [{entry.manifest[:12]}]: {checkpoint}, "
               f"{entry.source}, fine-tuned from {entry.fine_tuned_from or '-'}")


# --- generation ------------------------------------------------------------------------------


@cli.command("generate")
@click.argument("name", required=False)
@click.option("--prompt", help="Text to continue (default: the config's [generate] prompt; "
              "empty: unconditional).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Run config (TOML): model_name, tokenizer, device, dtype, seed and [generate] settings.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), help="Most tokens to generate (default 64).")
@click.option("--temperature", type=click.FloatRange(min=0),
              help="Sampling temperature; 0 is greedy (default 0.8).")
@click.option("--top-k", type=click.IntRange(min=0),
              help="Sample among the k likeliest tokens; 0: all (default 50).")
@click.option("--seed", type=click.IntRange(min=0),
              help="Random seed: same seed, same text (default: config seed, 0).")
@click.option("--device", help="auto, cpu, cuda, cuda:N or mps (default: config device, auto).")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              help="Convert the weights on load (default auto: keep the stored dtype).")
@click.pass_context
def generate_cmd(ctx, name, prompt, config_path, max_new_tokens, temperature, top_k, seed, device,
                 dtype) -> None:
    """Generate text from a registered model (or a checkpoint: NAME@step-N), streaming it to stdout."""
    from training.generate import generate_text

    class TextReporter(CliReporter):
        """Ends the streamed text's line before the closing status line, so the two do not run
        together on a terminal (stdout and stderr share it)."""

        streaming = ended = False

        def status(self, component: str, message: str) -> None:
            if self.streaming and not self.ended:
                click.echo()
                self.ended = True
            super().status(component, message)

    reporter = TextReporter()

    def emit(text: str) -> None:
        click.echo(text, nl=False)
        sys.stdout.flush()
        reporter.streaming = True

    generate_text(workspace(ctx), name, config=config_path, prompt=prompt, max_new_tokens=max_new_tokens,
                  temperature=temperature, top_k=top_k, seed=seed, device=device, dtype=dtype,
                  on_text=emit, reporter=reporter)
    if not reporter.ended:
        click.echo()


if __name__ == "__main__":
    cli(prog_name="python main.py")
