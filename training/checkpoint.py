"""Checkpoints: a run's weights, optimizer state and progress, as one manifest in the store.

Writing one follows the store's order (blobs -> manifest -> view -> registry entry):

1. tensors, through ``Adapter.save_tensors`` with ``skip`` = everything not trained and
   ``known`` = the parent's tensors: a frozen tensor reuses its parent's entry without being
   read or hashed; a trained one is hashed, and written if that blob is new;
2. files (config, tokenizer): the parent's entries, reused as they are;
3. the run's state, as file blobs listed in ``training.optimizer``: ``optimizer.safetensors``
   (trainable parameters only), ``rng.safetensors`` and ``trainer_state.json`` (step, the loss
   of every step, eval losses, tokens seen, the data's digest);
4. the manifest: ``parents`` = [the previous checkpoint, or the base model], ``origin`` =
   ``TrainingOrigin(run=output_name)``, ``training`` = step, settings, state files, metrics;
5. the commit: ``output_name`` is (re-)registered on it. The registry replace is the commit
   point, so a crash anywhere before leaves only blobs nothing references (gc sweeps them)
   and the name still on the previous checkpoint, which ``train --resume`` continues from.

The name is only ever moved from the run's own previous checkpoint: if someone else
registered ``output_name`` meanwhile, the commit fails and their model is left alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from adapters.base import Adapter, SaveStats
from registry.ops import register
from registry.registry_file import RegistryEntry
from registry.workspace import Workspace
from store.codec import Record, decode, encode_canonical
from registry.errors import ModelExistsError
from training.errors import ResumeError
from store.manifest import FileEntry, Manifest, Source, TrainingInfo, TrainingOrigin
from training.loop import LoopState
from training.models import store_model
from training.optim import Optimizer, restore_rng, rng_bytes

OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
STATE_FILE = "trainer_state.json"
TRAINER_STATE_FORMAT = 1


class TrainerState(Record):
    """``trainer_state.json``: the loop's progress (floats round-trip exactly through JSON)."""

    step: int
    losses: list[float]
    eval_losses: list[tuple[int, float]]
    tokens: int
    elapsed_s: float
    data_digest: str
    format: int = TRAINER_STATE_FORMAT

    @classmethod
    def of(cls, state: LoopState, data_digest: str) -> TrainerState:
        return cls(step=state.step, losses=list(state.losses), eval_losses=list(state.eval_losses),
                   tokens=state.tokens, elapsed_s=state.elapsed_s, data_digest=data_digest)

    def loop_state(self) -> LoopState:
        return LoopState(step=self.step, losses=list(self.losses),
                         eval_losses=[tuple(e) for e in self.eval_losses], tokens=self.tokens,
                         elapsed_s=self.elapsed_s)


@dataclass
class SavedCheckpoint:
    step: int
    digest: str
    manifest: Manifest
    entry: RegistryEntry
    stats: SaveStats  # the tensors: written, reused after hashing, skipped unread
    state_bytes: int  # optimizer, RNG and trainer state
    seconds: float


@dataclass
class Checkpointer:
    """Saves and commits the checkpoints of one run (``save`` is the loop's callback)."""

    workspace: Workspace
    adapter: Adapter
    model: nn.Module
    optimizer: Optimizer
    run: str  # output_name
    source: Source
    settings: dict[str, Any]
    skip: frozenset[str]  # in-memory entries not trained: reused from the parent unread
    data_digest: str
    max_steps: int
    parent: tuple[str, Manifest] | None  # the previous checkpoint or the base model; None from scratch
    committed: str | None  # the manifest output_name is registered on now (ours), None before the first
    first_files: dict[str, bytes | FileEntry] | None = None  # files of a model not stored yet
    fine_tuned_from: str | None = None
    license: str | None = None
    saved: list[SavedCheckpoint] = field(default_factory=list)

    def save(self, state: LoopState) -> SavedCheckpoint:
        started = time.perf_counter()
        objects = self.workspace.objects
        self.workspace.ensure_store()
        blobs = {
            OPTIMIZER_FILE: self.optimizer.state_bytes(),
            RNG_FILE: rng_bytes(),
            STATE_FILE: encode_canonical(TrainerState.of(state, self.data_digest)),
        }
        state_files = {}
        for relpath, data in blobs.items():
            put = objects.put_bytes(data)
            state_files[relpath] = FileEntry(digest=put.digest, size=put.size)
        metrics = {"loss": state.loss, "eval_loss": state.eval_loss, "tokens": float(state.tokens)}
        parent_digest, parent = self.parent if self.parent else (None, None)
        files = self.first_files if self.first_files is not None else dict(parent.files)
        stored = store_model(
            self.workspace, self.adapter, self.model, files=files, source=self.source, model_id=self.run,
            parents=[parent_digest] if parent_digest else [], origin=TrainingOrigin(run=self.run),
            training=TrainingInfo(step=state.step, settings=self.settings, optimizer=state_files,
                                  metrics={k: v for k, v in metrics.items() if v is not None}),
            license=self.license, skip=self.skip, known=parent.tensors if parent else None,
        )
        finished = state.step >= self.max_steps
        stamp = "fine_tuned_at" if self.source == "finetuned" else "trained_at"
        metadata = {stamp: stored.manifest.created_at, "training_step": state.step,
                    "training_status": "finished" if finished else "incomplete"}
        entry = register(self.workspace, self.run, stored.digest, stored.manifest,
                         fine_tuned_from=self.fine_tuned_from, metadata=metadata, on_conflict=self._own_only)
        self.parent = (stored.digest, stored.manifest)
        self.committed = stored.digest
        self.first_files = None
        saved = SavedCheckpoint(step=state.step, digest=stored.digest, manifest=stored.manifest, entry=entry,
                                stats=stored.stats, state_bytes=sum(len(b) for b in blobs.values()),
                                seconds=time.perf_counter() - started)
        self.saved.append(saved)
        return saved

    def _own_only(self, name: str) -> str:
        """register()'s conflict policy: move the name only from this run's last checkpoint."""
        current = self.workspace.read_registry().models.get(name)
        if current is not None and current.manifest == self.committed:
            return "overwrite"
        raise ModelExistsError(name, f"model {name!r} was registered by someone else while this run trained; "
                               "the checkpoint was stored but not registered",
                               "start the run again with another output_name")


@dataclass
class ResumePoint:
    digest: str
    manifest: Manifest
    state: LoopState
    data_digest: str
    optimizer_state: bytes
    rng_state: bytes


def resume_point(workspace: Workspace, name: str, digest: str, manifest: Manifest) -> ResumePoint:
    """The state saved with the checkpoint ``name`` is registered on (hash-verified on read)."""
    training = manifest.training
    if training is None or any(f not in training.optimizer for f in (OPTIMIZER_FILE, RNG_FILE, STATE_FILE)):
        raise ResumeError(f"model {name!r} was not saved by `train` with its optimizer state, so its run "
                          "cannot be resumed", "fine-tune it instead: set model_name to it and pick a new "
                          "output_name")
    read = {relpath: workspace.objects.read_bytes(entry.digest, verify=True)
            for relpath, entry in training.optimizer.items()}
    try:
        trainer = decode(read[STATE_FILE], TrainerState)
    except ValueError as e:
        raise ResumeError(f"the trainer state of {name!r} cannot be read ({e})") from None
    if trainer.format != TRAINER_STATE_FORMAT or trainer.step != training.step:
        raise ResumeError(f"the trainer state of {name!r} has format {trainer.format}, step {trainer.step}; "
                          f"expected format {TRAINER_STATE_FORMAT}, step {training.step}")
    return ResumePoint(digest=digest, manifest=manifest, state=trainer.loop_state(),
                       data_digest=trainer.data_digest, optimizer_state=read[OPTIMIZER_FILE],
                       rng_state=read[RNG_FILE])


def restore(point: ResumePoint, optimizer: Optimizer) -> LoopState:
    optimizer.load_state_bytes(point.optimizer_state)
    restore_rng(point.rng_state)
    return point.state
