"""The training commands: ``train``, ``register`` (a checkpoint under a name of its own) and
``generate``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cli.app import CliReporter, cli, workspace
from cli.training_text import checkpoint_line, eval_line, progress_line, progress_postfix
from training.observe import TrainReporter


# --- training ----------------------------------------------------------------------------------


class CliTrainReporter(CliReporter, TrainReporter):
    """Status lines on stderr, plus a progress bar (a line per tenth of the run without a terminal)."""

    def __init__(self):
        super().__init__()
        self.bar = None
        self.tty = sys.stderr.isatty() and os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") != "1"

    def _say(self, component: str, message: str) -> None:
        if self.quiet:
            return
        line = f"  {component:<10} {message}"
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)  # above the bar, which is redrawn below it
        else:
            click.echo(line, err=True)

    def on_step(self, state, max_steps, tokens_per_s) -> None:
        if self.quiet:
            return
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


@cli.command("train")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Run config (TOML): model_name (empty: the custom Transformer from scratch), data, "
              "freeze, output_name, ... (see configs/ and the README).")
@click.option("--resume", is_flag=True,
              help="Continue the run registered as output_name from its last checkpoint, exactly.")
@click.pass_context
def train_cmd(ctx, config_path, resume) -> None:
    """Train from scratch or fine-tune; checkpoints go into the store as they are saved."""
    from cli.training_text import train_summary
    from training.train import train

    reporter = CliTrainReporter()
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


class TextReporter(CliReporter):
    """Ends the streamed text's line before the closing status line, so the two do not run
    together on a terminal (stdout and stderr share it)."""

    streaming = ended = False

    def status(self, component: str, message: str) -> None:
        if self.streaming and not self.ended:
            click.echo()
            self.ended = True
        super().status(component, message)


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
@click.option("--tokenizer", help="A tokenizer folder or a registered model's name, for a model imported "
              "without one (default: the config's tokenizer, else the model's own).")
@click.option("--image", type=click.Path(dir_okay=False, path_type=Path),
              help="An image the prompt is about (vision-language models): processor and chat template applied.")
@click.pass_context
def generate_cmd(ctx, name, prompt, config_path, max_new_tokens, temperature, top_k, seed, device,
                 dtype, tokenizer, image) -> None:
    """Generate text from a registered model (or a checkpoint: NAME@step-N), streaming it to stdout."""
    from training.generate import generate_text

    reporter = TextReporter()

    def emit(text: str) -> None:
        click.echo(text, nl=False)
        sys.stdout.flush()
        reporter.streaming = True

    generate_text(workspace(ctx), name, config=config_path, prompt=prompt, max_new_tokens=max_new_tokens,
                  temperature=temperature, top_k=top_k, seed=seed, device=device, dtype=dtype,
                  on_text=emit, image=image, reporter=reporter, tokenizer=tokenizer)
    if not reporter.ended:
        click.echo()
