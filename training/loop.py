"""The training loop. It knows nothing about the model or the store.

It is handed a model (any ``nn.Module``), a loss function ``(model, inputs, targets) ->
scalar``, the batch of each step (a function of the step number), the held-out batches, an
optimizer (``training.optim.Optimizer``) and a ``save`` callback, and runs updates
``state.step + 1 .. max_steps``:

    batch(step) -> forward -> loss -> backward -> optimizer step (lr of that step)
    every eval_every steps and at the end: mean loss over the held-out batches
    every save_every steps and at the end: save(state)

Step N means "after N updates": the loss recorded for step N is that of the batch update N
was computed from, and a checkpoint of step N holds the weights after it. A run that starts
from step 0 also evaluates the untrained model first, so the eval curve has a baseline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from training.observe import LoopObserver
from training.optim import Optimizer

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class LoopState:
    """Everything about the run's progress that a checkpoint records and a resume restores."""

    step: int = 0
    losses: list[float] = field(default_factory=list)  # the loss of every step, from step 1
    eval_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out loss)
    tokens: int = 0  # training tokens seen
    elapsed_s: float = 0.0  # time spent in steps and evaluations, across resumes

    @property
    def loss(self) -> float | None:
        return self.losses[-1] if self.losses else None

    @property
    def eval_loss(self) -> float | None:
        return self.eval_losses[-1][1] if self.eval_losses else None


class Diverged(ArithmeticError):
    """The loss of a step is NaN or infinite (the caller knows what was committed)."""

    def __init__(self, step: int, value: float):
        super().__init__(f"the loss of step {step} is {value}")
        self.step, self.value = step, value


@dataclass
class Schedule:
    max_steps: int
    save_every: int = 0  # 0: only at the end
    eval_every: int = 0  # 0: only at the end

    def evaluates(self, step: int) -> bool:
        return step == self.max_steps or bool(self.eval_every and step % self.eval_every == 0)

    def saves(self, step: int) -> bool:
        return step == self.max_steps or bool(self.save_every and step % self.save_every == 0)


def evaluate(model: nn.Module, loss_fn: LossFn, batches: list[Batch], device: torch.device) -> float:
    """Mean loss over ``batches`` (equal-sized windows), in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for inputs, targets in batches:
            total += float(loss_fn(model, inputs.to(device), targets.to(device)))
    model.train(was_training)
    return total / len(batches)


def run_loop(model: nn.Module, *, loss_fn: LossFn, batch_at: Callable[[int], Batch], held_out: list[Batch],
             optimizer: Optimizer, lr_at: Callable[[int], float], schedule: Schedule, state: LoopState,
             device: torch.device, save: Callable[[LoopState], None],
             observer: LoopObserver | None = None) -> LoopState:
    observer = observer or LoopObserver()
    model.train()
    if state.step == 0 and held_out and not state.eval_losses:
        started = time.perf_counter()
        state.eval_losses.append((0, evaluate(model, loss_fn, held_out, device)))
        state.elapsed_s += time.perf_counter() - started
        observer.on_eval(state)
    recent: list[tuple[int, float]] = []  # (tokens, seconds) of the last steps, for tokens/s
    while state.step < schedule.max_steps:
        started = time.perf_counter()
        step = state.step + 1
        inputs, targets = batch_at(step)
        loss = loss_fn(model, inputs.to(device), targets.to(device))
        value = float(loss.detach())
        if not math.isfinite(value):
            raise Diverged(step, value)
        loss.backward()
        optimizer.step(lr_at(step))
        seconds = time.perf_counter() - started
        state.step = step
        state.losses.append(value)
        state.tokens += targets.numel()
        state.elapsed_s += seconds
        recent = (recent + [(targets.numel(), seconds)])[-20:]
        observer.on_step(state, schedule.max_steps, sum(t for t, _ in recent) / sum(s for _, s in recent))
        if held_out and schedule.evaluates(step):
            started = time.perf_counter()
            state.eval_losses.append((step, evaluate(model, loss_fn, held_out, device)))
            state.elapsed_s += time.perf_counter() - started
            observer.on_eval(state)
        if schedule.saves(step):
            save(state)
    return state
