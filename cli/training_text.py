"""Plain-text renderings of training results and progress, for the CLI to print.

Pure functions from results to strings: no I/O and no click, so they are tested directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.report import human_bytes, plural

if TYPE_CHECKING:
    from training.checkpoint import SavedCheckpoint
    from training.loop import LoopState
    from training.train import TrainResult


def progress_line(state: LoopState, max_steps: int, tokens_per_s: float) -> str:
    width = len(str(max_steps))
    held = f"  eval {state.eval_loss:.4f}" if state.eval_loss is not None else ""
    return (f"step {state.step:>{width}}/{max_steps}  loss {state.loss:.4f}{held}  "
            f"{tokens_per_s:,.0f} tok/s")


def progress_postfix(state: LoopState, tokens_per_s: float) -> str:
    held = f", eval {state.eval_loss:.4f}" if state.eval_loss is not None else ""
    return f"loss {state.loss:.4f}{held}, {tokens_per_s:,.0f} tok/s"


def eval_line(state: LoopState) -> str:
    step, loss = state.eval_losses[-1]
    return f"step {step}: held-out loss {loss:.4f}"


def checkpoint_line(saved: SavedCheckpoint) -> str:
    stats, name = saved.stats, saved.entry.model_name
    return (f"step {saved.step} [{saved.digest[:12]}] registered as {name} ({name}@step-{saved.step}): "
            f"{stats.written} tensor blobs written ({human_bytes(stats.written_bytes)}), "
            f"{stats.skipped} frozen reused unread ({human_bytes(stats.skipped_bytes)}), "
            f"optimizer state {human_bytes(saved.state_bytes)}, {saved.seconds:.2f} s")


def train_summary(result: TrainResult) -> str:
    state, entry = result.state, result.entry
    origin = f"fine-tuned from {result.base}" if result.base else f"{entry.source}, trained from scratch"
    held = f", held-out loss {state.eval_loss:.4f}" if state.eval_loss is not None else ""
    loss = f", loss {state.loss:.4f}" if state.loss is not None else ""
    lines = [f"registered {entry.model_name} [{entry.manifest[:12]}] ({origin}): "
             f"step {state.step}{loss}{held}"]
    if not result.checkpoints:
        lines.append("nothing to train: the run is at max_steps already")
        return "\n".join(lines)
    steps = state.step - result.start_step
    resumed = f", resumed at step {result.start_step}" if result.start_step else ""
    lines.append(f"{steps} steps, {state.tokens:,} tokens in total{resumed}, "
                 f"{state.elapsed_s:.1f} s of training")
    refs = ", ".join(f"{entry.model_name}@step-{c.step}" for c in result.checkpoints)
    lines.append(f"{plural(len(result.checkpoints), 'checkpoint')}: {refs} (load one as {entry.model_name}@step-N; "
                 f"`python main.py register {entry.model_name}@step-N` keeps it)")
    written = sum(c.stats.written_bytes for c in result.checkpoints)
    skipped = sum(c.stats.skipped for c in result.checkpoints)
    skipped_bytes = sum(c.stats.skipped_bytes for c in result.checkpoints)
    state_bytes = sum(c.state_bytes for c in result.checkpoints)
    lines.append(f"stored {human_bytes(written)} of tensors and {human_bytes(state_bytes)} of optimizer "
                 f"state; {skipped} frozen tensors ({human_bytes(skipped_bytes)}) reused without being read")
    lines.append(f'use it: python main.py generate {entry.model_name} --prompt "..."')
    return "\n".join(lines)
