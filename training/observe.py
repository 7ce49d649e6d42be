"""What a training run reports as it goes, without torch: the loop's observer and the
reporter ``train`` accepts (the CLI's progress bar subclasses it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.report import Reporter

if TYPE_CHECKING:
    from training.checkpoint import SavedCheckpoint
    from training.loop import LoopState


class LoopObserver:
    """What the loop reports as it goes; the base class ignores everything."""

    def on_step(self, state: LoopState, max_steps: int, tokens_per_s: float) -> None: ...

    def on_eval(self, state: LoopState) -> None: ...


class TrainReporter(Reporter, LoopObserver):
    """Status lines plus the loop's progress and each committed checkpoint."""

    def on_checkpoint(self, saved: SavedCheckpoint) -> None: ...
