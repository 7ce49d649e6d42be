"""``modelstore train --config run.toml [--resume]``.

With ``model_name`` empty the run trains the custom Transformer of the ``[model]`` table from
scratch (source "custom"); with ``model_name`` set it fine-tunes that registered model, or a
checkpoint ``NAME@step-N`` (source "finetuned"), through its architecture's adapter.

This module sets a run up and hands it over: the model and tokenizer (models.py), the
frozen and trained parameters (``freeze`` globs over tensor names, adapters/base.py), the
data (data.py), the optimizer (optim.py), the loop (loop.py) and the checkpoints
(checkpoint.py), whose first one registers ``output_name`` and each later one moves it on.

``--resume`` continues the run registered as ``output_name`` from its checkpoint: weights,
optimizer state, RNG state and step, exactly, so the loss curve is the one an uninterrupted
run gives. The settings that shape the trajectory (``RESUME_KEYS``, and the data's tokens)
must be those the run started with; ``max_steps``, ``save_every``, ``eval_every``,
``eval_batches`` and ``device`` may change (a larger ``max_steps`` continues a finished run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import torch
import torch.nn as nn
import torch.nn.functional as F

from adapters.base import Adapter
from adapters.devices import resolve_device
from registry.view_state import refuse_written_view
from registry.checkpoints import is_ref, resolve_checkpoint
from registry.registry_file import RegistryEntry
from registry.report import NullReporter, Reporter, human_bytes
from registry.workspace import Workspace
from registry.errors import ModelExistsError
from training.errors import ConfigError, ResumeError, TrainingDivergedError, TrainingInterrupted
from store.manifest import FileEntry, Manifest, Source
from training.checkpoint import Checkpointer, ResumePoint, SavedCheckpoint, restore, resume_point
from training.config import RunConfig, load_config
from training.data import TokenData, eval_batches, load_tokens, train_batch
from training.loop import Diverged, LoopState, Schedule, run_loop
from training.models import build_custom_model, load_version, named_model
from training.observe import LoopObserver, TrainReporter
from training.optim import Optimizer, lr_at
from training.threads import set_cpu_threads

# Config keys that shape the trajectory: a resumed run must keep them (plus [model] from scratch).
RESUME_KEYS = ("model_name", "tokenizer", "seq_len", "batch_size", "lr", "warmup_steps", "weight_decay",
               "grad_clip", "seed", "freeze", "dtype", "eval_fraction")


@dataclass
class TrainResult:
    name: str
    entry: RegistryEntry
    state: LoopState
    start_step: int  # the step this invocation started from (0, or the resumed checkpoint's)
    checkpoints: list[SavedCheckpoint]  # saved by this invocation
    base: str | None  # what it was fine-tuned from (a name or NAME@step-N), None from scratch
    trainable_bytes: int
    frozen_bytes: int


@dataclass
class _Start:
    """The model a run starts from, and what its first checkpoint inherits."""

    label: str
    adapter: Adapter
    model: nn.Module
    tokenizer: Any
    source: Source
    parent: tuple[str, Manifest] | None
    first_files: dict[str, bytes | FileEntry] | None = None
    base: str | None = None  # the name (or NAME@step-N) it was fine-tuned from
    base_digest: str | None = None  # that version's manifest
    license: str | None = None


def next_token_loss(adapter: Adapter):
    """Cross-entropy of each position's next token, computed in float32 whatever the dtype."""

    def loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = adapter.logits(model, inputs)  # (B, T, V)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())

    return loss


def train(workspace: Workspace, config: RunConfig | str | Path, *, resume: bool = False,
          reporter: Reporter | None = None) -> TrainResult:
    """Run ``config`` (a RunConfig, or the path of its TOML file) and return what it registered."""
    if isinstance(config, RunConfig):
        where = "<config>"
    else:
        where, config = str(config), load_config(config)
    reporter = reporter or NullReporter()
    name = config.output_name
    if not name:
        raise ConfigError(where, "key 'output_name' is missing: train registers its result under that name",
                          'add e.g. output_name = "my-model"')
    _check_data_exists(config, where)
    device = resolve_device(config.device)
    registered = workspace.read_registry().models.get(name)
    point = None
    if resume:
        point = _resume_point(workspace, config, registered, where)
        if point.state.step >= config.max_steps:
            reporter.status("train", f"{name} is already at step {point.state.step} of max_steps "
                            f"{config.max_steps}: nothing to do (raise max_steps to train further)")
            return TrainResult(name=name, entry=registered, state=point.state, start_step=point.state.step,
                               checkpoints=[], base=registered.fine_tuned_from, trainable_bytes=0,
                               frozen_bytes=0)
        start = _start_from(workspace, point, registered, config, device)
    elif registered is not None:
        raise ModelExistsError(name, f"output_name {name!r} is already registered",
                               "pass --resume to continue its training, or choose another output_name")
    elif config.model_name:
        start = _fine_tune_start(workspace, config, device)
    else:
        start = _scratch_start(workspace, config, device)
    model = start.model
    set_cpu_threads(device, _params(model))
    reporter.status("model", f"{start.label} ({type(model).__name__}, {_params(model):,} parameters, "
                    f"{_dtype(next(model.parameters()))} on {device})")

    trainable, skip = _freeze(start, config, where)
    trained_bytes = sum(p.numel() * p.element_size() for p in trainable.values())
    total_bytes = sum(t.numel() * t.element_size() for t in start.adapter.memory_state(model).values())
    frozen_bytes = total_bytes - trained_bytes
    reporter.status("freeze", f"{len(skip)} tensors frozen ({human_bytes(frozen_bytes)}, "
                    f"{frozen_bytes / total_bytes:.0%} of the weights), {len(trainable)} trained "
                    f"({human_bytes(trained_bytes)})")
    data = _data(config, start, where)
    reporter.status("data", f"{data.files} file(s), {data.tokens:,} tokens: {data.train.numel():,} to train "
                    f"on, {data.held_out.numel():,} held out")
    if point is not None and point.data_digest != data.digest:
        raise ResumeError(f"the training data ({config.data}) is not what the run started with: its tokens "
                          "differ", "restore the data, or start a new run under another output_name")
    held_out = eval_batches(data, batch_size=config.batch_size, seq_len=config.seq_len,
                            max_batches=config.eval_batches)
    if config.eval_fraction and not held_out:
        reporter.warning(f"the held-out split is shorter than one window of seq_len {config.seq_len} + 1 "
                         "tokens: no eval loss will be reported")

    optimizer = Optimizer(trainable, lr=config.lr, weight_decay=config.weight_decay,
                          grad_clip=config.grad_clip)
    if optimizer.masters:
        reporter.status("precision", f"{_dtype(next(iter(trainable.values())))} weights, float32 master "
                        "copies of the trained ones for the optimizer")
    checkpointer = Checkpointer(
        workspace=workspace, adapter=start.adapter, model=model, optimizer=optimizer, run=name,
        source=start.source, settings=_settings(config, data, start, device, len(trainable)), skip=skip,
        data_digest=data.digest, max_steps=config.max_steps, parent=start.parent,
        committed=point.digest if point else None, first_files=start.first_files,
        fine_tuned_from=start.base, license=start.license)
    state, start_step = _run(config, start, data, held_out, optimizer, checkpointer, point, device, reporter)
    return TrainResult(name=name, entry=checkpointer.saved[-1].entry, state=state, start_step=start_step,
                       checkpoints=checkpointer.saved, base=start.base, trainable_bytes=trained_bytes,
                       frozen_bytes=frozen_bytes)


def _run(config: RunConfig, start: _Start, data: TokenData, held_out: list, optimizer: Optimizer,
         checkpointer: Checkpointer, point: ResumePoint | None, device: torch.device,
         reporter: Reporter) -> tuple[LoopState, int]:
    """The loop, with the RNG seeded (or restored) inside a fork that gives the caller's back."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        if point is not None:
            state = restore(point, optimizer)
            reporter.status("resume", f"from {config.output_name}@step-{state.step} [{point.digest[:12]}]")
        else:
            torch.manual_seed(config.seed)
            state = LoopState()
        start_step = state.step

        def save(state: LoopState) -> None:
            saved = checkpointer.save(state)
            if isinstance(reporter, TrainReporter):
                reporter.on_checkpoint(saved)

        def committed() -> str | None:
            step = checkpointer.saved[-1].step if checkpointer.saved else start_step if point else None
            return None if step is None else f"{config.output_name}@step-{step}"

        def batch_at(step: int):
            return train_batch(data, step=step, seed=config.seed, batch_size=config.batch_size,
                               seq_len=config.seq_len)

        try:
            run_loop(start.model, loss_fn=next_token_loss(start.adapter), batch_at=batch_at,
                     held_out=held_out, optimizer=optimizer,
                     lr_at=lambda step: lr_at(step, config.lr, config.warmup_steps),
                     schedule=Schedule(config.max_steps, config.save_every, config.eval_every),
                     state=state, device=device, save=save,
                     observer=reporter if isinstance(reporter, LoopObserver) else None)
        except KeyboardInterrupt:
            raise TrainingInterrupted(state.step, committed()) from None
        except Diverged as e:
            raise TrainingDivergedError(e.step, e.value, committed()) from None
    return state, start_step


def _resume_point(workspace: Workspace, config: RunConfig, registered: RegistryEntry | None,
                  where: str) -> ResumePoint:
    if registered is None:
        raise ResumeError(f"no model named {config.output_name!r} is registered, so there is no run to "
                          "resume", "run without --resume to start it")
    manifest = workspace.manifest(registered.manifest)
    refuse_written_view(workspace, registered, manifest)  # the run goes on from what its name holds
    point = resume_point(workspace, config.output_name, registered.manifest, manifest)
    _check_same_run(config, manifest, where)
    return point


# --- where a run starts ------------------------------------------------------------------------


def _scratch_start(workspace: Workspace, config: RunConfig, device: torch.device) -> _Start:
    built = build_custom_model(workspace, config)
    return _Start(label="a new custom Transformer", adapter=built.adapter, model=built.model.to(device),
                  tokenizer=built.tokenizer, source="custom", parent=None, first_files=built.files)


def _fine_tune_start(workspace: Workspace, config: RunConfig, device: torch.device) -> _Start:
    base = config.model_name
    if is_ref(base):
        checkpoint, manifest, _ = resolve_checkpoint(workspace, base)
        digest = checkpoint.digest
    else:
        entry, manifest = named_model(workspace, base)  # a view written into is refused
        digest = entry.manifest
    loaded = load_version(workspace, manifest, base, device=str(device), dtype=config.dtype,
                          tokenizer=config.tokenizer)
    start = _Start(label=base, adapter=loaded.adapter, model=loaded.model, tokenizer=loaded.tokenizer,
                   source="finetuned", parent=(digest, manifest), base=base, base_digest=digest,
                   license=manifest.license)
    specs = loaded.adapter.tensor_layout(loaded.model).specs
    if any(manifest.tensors[n].dtype != spec[0] for n, spec in specs.items() if n in manifest.tensors):
        # Converted on load (dtype set): the new dtype's config goes with it, and no tensor can
        # be shared with the base, whose blobs hold the old dtype.
        start.first_files = {**manifest.files, **loaded.adapter.config_files(loaded.model)}
    return start


def _start_from(workspace: Workspace, point: ResumePoint, entry: RegistryEntry, config: RunConfig,
                device: torch.device) -> _Start:
    """The registered checkpoint, as stored (its dtype is the run's)."""
    manifest = point.manifest
    loaded = load_version(workspace, manifest, f"{entry.model_name}@step-{point.state.step}",
                          device=str(device), dtype="auto", tokenizer=config.tokenizer)
    settings = manifest.training.settings if manifest.training else {}
    return _Start(label=loaded.name, adapter=loaded.adapter, model=loaded.model, tokenizer=loaded.tokenizer,
                  source=manifest.source, parent=(point.digest, manifest), base=entry.fine_tuned_from,
                  base_digest=settings.get("base"), license=manifest.license)


# --- setup steps -------------------------------------------------------------------------------


def _freeze(start: _Start, config: RunConfig, where: str) -> tuple[dict[str, nn.Parameter], frozenset[str]]:
    """The trained parameters (name -> parameter), and every other state entry (skipped on save)."""
    adapter, model = start.adapter, start.model
    for i, pattern in enumerate(config.freeze):
        if not adapter.params_matching(model, [pattern]):
            raise ConfigError(where, f"key 'freeze[{i}]': {pattern!r} matches no tensor of {start.label}",
                              "tensor names are those model-info and the view's model.safetensors.index.json show")
    frozen = adapter.params_matching(model, config.freeze)
    trainable = {name: p for name, p in model.named_parameters() if name not in frozen}
    if not trainable:
        raise ConfigError(where, "key 'freeze': every parameter is frozen, so there is nothing to train")
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
    model.train()
    return trainable, frozenset(adapter.memory_state(model).keys() - trainable.keys())


def _check_data_exists(config: RunConfig, where: str) -> None:
    """Before any model loads: the data exists, named as resolved (a config copied elsewhere
    keeps its relative ``data`` path, which then points nowhere)."""
    if not Path(config.data).exists():
        folder = Path(where).absolute().parent if where != "<config>" else Path.cwd()
        raise ConfigError(where, f"key 'data': {os.path.normpath(config.data)} does not exist (relative "
                          f"paths are resolved against the config file's folder, {folder})",
                          "set data to a text file or a folder of .txt/.md files, or drop the key to "
                          "train on the project's corpus")


def _data(config: RunConfig, start: _Start, where: str) -> TokenData:
    limit = start.adapter.context_length(start.model)
    if limit and config.seq_len > limit:
        raise ConfigError(where, f"key 'seq_len': {config.seq_len} is longer than {start.label}'s context "
                          f"length ({limit})", "lower seq_len")
    return load_tokens(config.data, start.tokenizer, eval_fraction=config.eval_fraction,
                       seq_len=config.seq_len, where=where)


def _settings(config: RunConfig, data: TokenData, start: _Start, device: torch.device,
              trainable: int) -> dict[str, Any]:
    import transformers

    run = msgspec.to_builtins(config)
    run.pop("generate", None)
    if not config.uses_custom_model:
        run.pop("model", None)  # the [model] table only shapes a model trained from scratch
    return {"config": run, "base": start.base_digest, "data_digest": data.digest,
            "data_tokens": data.tokens, "trainable_tensors": trainable, "device": str(device),
            "torch": str(torch.__version__), "transformers": transformers.__version__}


def _check_same_run(config: RunConfig, manifest: Manifest, where: str) -> None:
    started = (manifest.training.settings if manifest.training else {}).get("config") or {}
    now = msgspec.to_builtins(config)
    keys = RESUME_KEYS + (("model",) if config.uses_custom_model else ())
    for key in keys:
        if key in started and started[key] != now.get(key):
            raise ResumeError(f"{where}: key {key!r} is {now.get(key)!r}, but the run was started with "
                              f"{started[key]!r}", "set it back to continue this run, or start a new run "
                              "under another output_name")


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
