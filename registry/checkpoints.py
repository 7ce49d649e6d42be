"""Training checkpoints: the versions a run stored on its way, and ``NAME@step-N``.

``modelstore train`` stores a checkpoint every ``save_every`` steps and at the end: a
manifest with ``origin = TrainingOrigin(run=<output name>)`` and ``training.step``, whose
first parent is the run's previous checkpoint (or the base model, for the first one). The
output name is re-registered on each new checkpoint as the run goes, so a model produced
by training *is* the newest checkpoint of its run, and following first parents while they
belong to the same run lists every checkpoint of it.

``NAME@step-N`` is the checkpoint at step N of the run that produced the registered model
NAME. ``generate``, a config's ``model_name`` (fine-tune from a checkpoint) and
``register`` (give it a name of its own) accept it.

What is kept: gc keeps what registered models reach, so the newest checkpoint (weights,
optimizer state) stays, and so does every older checkpoint's *manifest* (lineage). Older
checkpoints' tensors that changed since are reached by nothing registered: they load until
gc collects them (after its grace period), which ``Checkpoint.available`` tells.
``register NAME@step-N`` pins one under a name, and gc keeps it like any model.

No torch here: ``model-info`` lists checkpoints without importing it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from registry.ops import ConflictPolicy, get_entry, register
from registry.registry_file import RegistryEntry
from registry.workspace import Workspace
from registry.errors import CheckpointGoneError, CheckpointNotFoundError
from store.errors import ModelStoreError
from store.manifest import Manifest, TrainingOrigin

_REF = re.compile(r"^(?P<name>[^@]+)@step-(?P<step>\d+)$")


@dataclass
class Checkpoint:
    run: str  # the output name the run trained towards
    step: int
    digest: str  # its manifest
    created_at: str
    metrics: dict[str, float] = field(default_factory=dict)
    missing: int = 0  # objects (tensors, files, optimizer state) not in the store any more
    resumable: bool = False  # its optimizer state is stored (and present)

    @property
    def available(self) -> bool:
        """Every object it needs is present: it loads, and can be registered."""
        return self.missing == 0


def parse_ref(text: str) -> tuple[str, int] | None:
    """``("NAME", N)`` for ``"NAME@step-N"``, None for anything else (a plain name)."""
    match = _REF.match(text)
    return (match["name"], int(match["step"])) if match else None


def is_ref(text: str) -> bool:
    return "@" in text


def run_of(manifest: Manifest) -> str | None:
    """The training run that stored this version, or None when it was not made by training."""
    if manifest.training is None or not isinstance(manifest.origin, TrainingOrigin):
        return None
    return manifest.origin.run


def run_checkpoints(workspace: Workspace, digest: str,
                    manifest: Manifest | None = None) -> list[Checkpoint]:
    """Checkpoints of the run that stored ``digest``, oldest first, ending with ``digest``."""
    manifest = manifest or workspace.manifest(digest)
    run = run_of(manifest)
    found: list[Checkpoint] = []
    seen: set[str] = set()
    while run is not None and run_of(manifest) == run and digest not in seen:
        seen.add(digest)
        found.append(_checkpoint(workspace, run, digest, manifest))
        if not manifest.parents:
            break
        digest = manifest.parents[0]
        try:
            manifest = workspace.manifest(digest)
        except ModelStoreError:
            break  # an unreadable ancestor ends the run's history; validate-registry reports it
    found.reverse()
    return found


def _checkpoint(workspace: Workspace, run: str, digest: str, manifest: Manifest) -> Checkpoint:
    sizes = manifest.expected_sizes()
    missing = sum(1 for d, size in sizes.items() if workspace.objects.size(d) != size)
    training = manifest.training
    assert training is not None
    optimizer_present = all(workspace.objects.size(f.digest) == f.size for f in training.optimizer.values())
    return Checkpoint(run=run, step=training.step, digest=digest, created_at=manifest.created_at,
                      metrics=dict(training.metrics), missing=missing,
                      resumable=bool(training.optimizer) and optimizer_present)


def resolve_checkpoint(workspace: Workspace, ref: str) -> tuple[Checkpoint, Manifest, RegistryEntry]:
    """The checkpoint ``NAME@step-N`` names, its manifest and NAME's registry entry.

    Raises when NAME is not registered, its run has no step N, or gc took its blobs.
    """
    parsed = parse_ref(ref)
    if parsed is None:
        raise CheckpointNotFoundError(ref, "a checkpoint reference reads NAME@step-N "
                                      "(e.g. my-model@step-200)")
    name, step = parsed
    entry = get_entry(workspace, name)
    manifest = workspace.manifest(entry.manifest)
    checkpoints = run_checkpoints(workspace, entry.manifest, manifest)
    if not checkpoints:
        raise CheckpointNotFoundError(ref, f"model {name!r} was not produced by `train`, so it has no "
                                      "checkpoints")
    chosen = next((c for c in checkpoints if c.step == step), None)
    if chosen is None:
        raise CheckpointNotFoundError(ref, f"the run that produced {name!r} stored no checkpoint at step "
                                      f"{step}", [c.step for c in checkpoints])
    if not chosen.available:
        raise CheckpointGoneError(ref, chosen.missing)
    chosen_manifest = manifest if chosen.digest == entry.manifest else workspace.manifest(chosen.digest)
    return chosen, chosen_manifest, entry


def default_name(ref: str) -> str:
    """``NAME-step-N`` for ``NAME@step-N``: the name a pinned checkpoint gets by default."""
    return ref.replace("@", "-", 1)


def register_checkpoint(workspace: Workspace, ref: str, name: str | None = None, *,
                        on_conflict: ConflictPolicy = "cancel",
                        on_wait: Callable[[], None] | None = None) -> RegistryEntry:
    """Give the checkpoint ``ref`` a name of its own: gc then keeps all of it, it gets a view
    (stock transformers loads it), and it can be fine-tuned or resumed from like any model."""
    checkpoint, manifest, entry = resolve_checkpoint(workspace, ref)
    metadata = {"checkpoint_of": entry.model_name, "training_step": checkpoint.step,
                "trained_at": checkpoint.created_at}
    return register(workspace, name or default_name(ref), checkpoint.digest, manifest,
                    fine_tuned_from=entry.fine_tuned_from, metadata=metadata, on_conflict=on_conflict,
                    on_wait=on_wait)
