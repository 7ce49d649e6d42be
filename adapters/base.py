"""The adapter interface: what an architecture provides so the store can hold it.

An adapter turns a model's files (``config.json`` + tensors under their *on-disk* names,
exactly as a Hugging Face checkpoint or a view holds them) into a torch model and back:

* ``build``: a randomly initialised model from a config (seeded, deterministic);
* ``load_folder`` / ``load_manifest``: from a folder (a view, or any HF-format folder) or
  straight from a manifest's blobs (how models are loaded by name: no symlink walking);
* ``save_tensors``: the model's tensors into the store, one canonical blob per on-disk
  tensor, skipping (not even hashing) groups the caller declares unchanged;
* ``smoke_test``: one forward pass, logits of the right shape and finite;
* ``load_tokenizer``, ``logits`` and ``decoder`` for generation and training.

On-disk vs in-memory names. Most architectures keep the checkpoint's tensor names in
memory, but some do not: transformers 5.x fuses MoE experts into one tensor per layer in
memory while checkpoints (and so the store, whose views stock ``from_pretrained`` must load)
hold one tensor per expert. ``tensor_layout`` describes that mapping as groups: each group
is a set of in-memory state-dict entries and the on-disk tensors made from them. It is
what lets a trainer that freezes parameters (in-memory) skip the on-disk blobs made from
them, and match freeze patterns written against on-disk names.
"""

from __future__ import annotations

import fnmatch
import re
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from adapters.blobs import BlobCheck, dtype_name, map_tensors, put_torch_tensor, read_config
from adapters.errors import ModelCheckError
from store.manifest import Manifest, TensorEntry
from store.objects import ObjectStore

Skip = Callable[[str], bool] | Iterable[str] | None


@dataclass(frozen=True)
class TensorGroup:
    params: tuple[str, ...]  # in-memory state-dict names
    tensors: tuple[str, ...]  # on-disk tensor names made from exactly those entries


@dataclass(frozen=True)
class TensorLayout:
    groups: list[TensorGroup]
    specs: dict[str, tuple[str, list[int]]]  # on-disk name -> (safetensors dtype, shape)
    identity: bool  # True when every group is one tensor under one unchanged name


@dataclass
class SaveStats:
    written: int = 0  # new blobs
    written_bytes: int = 0
    reused: int = 0  # hashed, already in the store (an unchanged tensor): nothing written
    reused_bytes: int = 0
    skipped: int = 0  # declared unchanged by the caller: neither hashed nor written
    skipped_bytes: int = 0


@dataclass
class SavedTensors:
    tensors: dict[str, TensorEntry]  # on-disk name -> entry, for the manifest
    stats: SaveStats = field(default_factory=SaveStats)


class Adapter:
    """Base class of every architecture adapter. Subclasses implement the first block."""

    @property
    def model_types(self) -> tuple[str, ...]:
        """The config model_types the adapter table (adapters/__init__.py) routes here."""
        from adapters import ADAPTERS

        spec = f"{type(self).__module__}:{type(self).__name__}"
        return tuple(t for t, s in ADAPTERS.items() if s == spec)

    # --- what an architecture must provide -------------------------------------------------

    def build(self, config: dict, *, seed: int = 0, dtype: torch.dtype | None = None) -> nn.Module:
        """A randomly initialised model for ``config`` (config.json's contents)."""
        raise NotImplementedError

    def config_files(self, model: nn.Module) -> dict[str, bytes]:
        """The non-weight files that describe ``model`` (at least config.json), as bytes."""
        raise NotImplementedError

    def from_tensors(self, config: dict, tensors: dict[str, torch.Tensor], *,
                     dtype: torch.dtype | None = None) -> nn.Module:
        """A model from config.json's contents and tensors under their on-disk names."""
        raise NotImplementedError

    def load_folder(self, folder: Path, *, dtype: torch.dtype | None = None) -> nn.Module:
        """A model from a folder: a view, or any folder in this architecture's own format."""
        raise NotImplementedError

    def memory_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict without aliases (a tied head is stored once)."""
        raise NotImplementedError

    def disk_tensors(self, model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Convert (part of) ``memory_state`` to on-disk names and layout."""
        return state

    def logits(self, model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) for token ids (B, T)."""
        raise NotImplementedError

    def context_length(self, model: nn.Module) -> int | None:
        """Longest sequence the model accepts, or None when positions are not bounded."""
        return None

    def vocab_size(self, model: nn.Module) -> int:
        raise NotImplementedError

    def decoder(self, model: nn.Module) -> Decoder:
        """Step-by-step next-token logits for generation (see ``Decoder``)."""
        return Decoder(self, model)

    def takes_images(self, model: nn.Module) -> bool:
        """Whether the model has a vision tower that ``image_inputs`` can feed."""
        return False

    def image_inputs(self, model: nn.Module, folder: Path | None, tokenizer, prompt: str,
                     image) -> dict[str, torch.Tensor]:
        """Model inputs for ``image`` (a PIL image) then ``prompt``, chat template applied;
        ``folder`` holds the model's processor files."""
        raise NotImplementedError

    def image_check(self, model: nn.Module, folder: Path) -> str | None:
        """The load check's image pass (a line for the status output), None without one."""
        return None

    def expected_tensors(self, config: dict) -> dict[str, tuple[str, list[int]]]:
        """The on-disk tensors (name -> (safetensors dtype, shape)) a checkpoint of ``config``
        holds, from the model built on the meta device: no memory, no weights read. Tensors
        kept by design (``kept_by_design_for``) are not listed: a checkpoint may hold them."""
        with torch.device("meta"):
            model = self.build(config)
        tensors = self.disk_tensors(model, self.memory_state(model))
        return {name: (dtype_name(t.dtype), list(t.shape)) for name, t in tensors.items()}

    def kept_by_design_for(self, config: dict) -> list[str]:
        """``kept_by_design`` of the model ``config`` describes, without building it."""
        return []

    def kept_by_design(self, model: nn.Module) -> list[str]:
        """Regexes of checkpoint tensors the model does not load by design (an MTP head): a
        checkpoint of the model keeps its parent's, unchanged."""
        return []

    def load_tokenizer(self, folder: Path):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)

    # --- provided ----------------------------------------------------------------------------

    def load_manifest(self, objects: ObjectStore, manifest: Manifest, *,
                      dtype: torch.dtype | None = None, label: str | None = None,
                      verify: bool = True) -> nn.Module:
        """Load straight from the blobs a manifest names (mapped, not copied; see blobs.py).

        Every blob is verified against its digest (``verify``; only benchmarks turn it off):
        config.json before it is parsed, the tensor blobs by a thread that hashes them while
        the model is built, joined before the model is returned. A blob that changed is a
        ``BlobChangedError`` naming ``label`` (default: the model id) and the tensor.
        """
        model, check = self.load_manifest_verifying(objects, manifest, dtype=dtype, label=label, verify=verify)
        if check is not None:
            check.join()
        return model

    def load_manifest_verifying(self, objects: ObjectStore, manifest: Manifest, *,
                                dtype: torch.dtype | None = None, label: str | None = None,
                                verify: bool = True) -> tuple[nn.Module, BlobCheck | None]:
        """``load_manifest`` that returns the model with its still-running ``BlobCheck``: the
        caller does more of its loading meanwhile (the tokenizer) and must ``join`` it before
        the model is used, or ``cancel`` it if it gives up."""
        label = label or manifest.model_id
        config = read_config(objects, manifest, label=label)
        check = BlobCheck(objects, manifest.tensors, label) if verify else None
        try:
            model = self.from_tensors(config, map_tensors(objects, manifest.tensors), dtype=dtype)
        except Exception:
            if check is not None:
                check.join()  # a changed blob explains a failed build better than the build does
            raise
        except BaseException:
            if check is not None:
                check.cancel()
            raise
        return model, check

    def tensor_layout(self, model: nn.Module) -> TensorLayout:
        """How in-memory entries become on-disk tensors; cached per model (shapes only)."""
        state = self.memory_state(model)
        key = tuple((k, t.dtype, tuple(t.shape)) for k, t in state.items())
        cached = _layouts.get(model)
        if cached is not None and cached[0] == key:
            return cached[1]
        layout = self._compute_layout(model, state)
        _layouts[model] = (key, layout)
        return layout

    def _compute_layout(self, model: nn.Module, state: dict[str, torch.Tensor]) -> TensorLayout:
        # Convert meta copies (shapes, no data): cheap, and exactly what a real save does.
        meta = {k: t.detach().to("meta") for k, t in state.items()}
        full = self.disk_tensors(model, dict(meta))
        specs = {name: (dtype_name(t.dtype), list(t.shape)) for name, t in full.items()}
        if full.keys() == meta.keys() and all(full[k].shape == meta[k].shape for k in meta):
            return TensorLayout([TensorGroup((k,), (k,)) for k in state], specs, identity=True)
        groups, seen = [], set()
        try:
            for k in meta:
                names = tuple(self.disk_tensors(model, {k: meta[k]}))
                groups.append(TensorGroup((k,), names))
                seen.update(names)
        except Exception:  # a conversion that needs several entries at once
            groups = []
        if not groups or seen != set(full) or sum(len(g.tensors) for g in groups) != len(full):
            # Entries do not convert one by one: one group, saved (and skipped) as a whole.
            groups = [TensorGroup(tuple(state), tuple(full))]
        return TensorLayout(groups, specs, identity=False)

    def save_tensors(self, model: nn.Module, objects: ObjectStore, *, skip: Skip = None,
                     known: dict[str, TensorEntry] | None = None) -> SavedTensors:
        """Write the model's tensors as canonical blobs under their on-disk names.

        ``skip``: in-memory names (a set, or a predicate) the caller guarantees unchanged
        since the model whose manifest entries are ``known`` (on-disk name -> entry), e.g.
        frozen parameters during fine-tuning. A group whose entries are all skipped, and
        whose on-disk tensors are all in ``known`` with the same dtype and shape, reuses
        those entries: its bytes are neither hashed nor written. Anything else is hashed,
        and written only if the store lacks that blob (an unchanged tensor costs a hash).
        """
        layout = self.tensor_layout(model)
        state = self.memory_state(model)
        skipped = _predicate(skip)
        known = known or {}
        out: dict[str, TensorEntry] = {}
        stats = SaveStats()
        for group in layout.groups:
            if all(skipped(p) for p in group.params) and all(
                _same_layout(known.get(t), layout.specs[t]) for t in group.tensors
            ):
                for name in group.tensors:
                    out[name] = known[name]
                    stats.skipped += 1
                    stats.skipped_bytes += known[name].nbytes
                continue
            part = {p: state[p] for p in group.params}
            tensors = part if layout.identity else self.disk_tensors(model, part)
            for name in group.tensors:
                entry, put = put_torch_tensor(objects, name, tensors[name])
                out[name] = entry
                if put.written:
                    stats.written += 1
                    stats.written_bytes += entry.nbytes
                else:
                    stats.reused += 1
                    stats.reused_bytes += entry.nbytes
        # Tensors the model does not load by design (an MTP head) stay as the parent had them.
        kept = [re.compile(p) for p in self.kept_by_design(model)]
        for name, entry in known.items():
            if name not in out and any(p.search(name) for p in kept):
                out[name] = entry
                stats.skipped += 1
                stats.skipped_bytes += entry.nbytes
        return SavedTensors(tensors=out, stats=stats)

    def params_matching(self, model: nn.Module, patterns: Iterable[str]) -> set[str]:
        """In-memory entries selected by glob ``patterns`` over tensor names.

        A pattern may name an in-memory entry or on-disk tensors (the names ``model-info``
        and manifests show). An entry is selected when its own name matches, or when every
        on-disk tensor of its group does: freezing "one expert" of a fused MoE tensor is not
        possible, so such a pattern selects nothing rather than a whole layer's experts.
        """
        patterns = list(patterns)

        def hit(name: str) -> bool:
            return any(fnmatch.fnmatchcase(name, p) for p in patterns)

        selected = set()
        for group in self.tensor_layout(model).groups:
            if all(hit(t) for t in group.tensors):
                selected.update(group.params)
            else:
                selected.update(p for p in group.params if hit(p))
        return selected

    def smoke_test(self, model: nn.Module, length: int = 8) -> torch.Tensor:
        """One forward pass over a few token ids; the logits must be (1, T, V) and finite."""
        vocab = self.vocab_size(model)
        limit = self.context_length(model)
        length = min(length, limit) if limit else length
        device = next(model.parameters()).device
        ids = (torch.arange(length, device=device) * 7919 % vocab).unsqueeze(0)
        with torch.inference_mode():
            logits = self.logits(model, ids)
        if tuple(logits.shape) != (1, length, vocab):
            raise ModelCheckError(f"the forward pass gave logits of shape {tuple(logits.shape)}, "
                                  f"expected {(1, length, vocab)}")
        if not torch.isfinite(logits).all():
            bad = int((~torch.isfinite(logits)).sum())
            raise ModelCheckError(f"the forward pass gave {bad} non-finite logits (NaN or inf)")
        return logits


class Decoder:
    """Next-token logits, one step at a time, for generation.

    ``step(new_ids)`` takes the ids appended since the last call ((1, n) tensor) and returns
    the logits (V,) of the position after the last one. This default re-runs the whole
    (cropped) context each step, as nanoGPT's sampler does; adapters whose models keep a
    key/value cache override ``Adapter.decoder``.
    """

    def __init__(self, adapter: Adapter, model: nn.Module):
        self.adapter, self.model = adapter, model
        self.context_length = adapter.context_length(model)
        self.ids: torch.Tensor | None = None

    def step(self, new_ids: torch.Tensor) -> torch.Tensor:
        self.ids = new_ids if self.ids is None else torch.cat([self.ids, new_ids], dim=1)
        if self.context_length and self.ids.shape[1] > self.context_length:
            self.ids = self.ids[:, -self.context_length:]  # the model never saw longer contexts
        return self.adapter.logits(self.model, self.ids)[0, -1]


# model -> (state key, layout): layouts are recomputed only when the state's shapes change.
_layouts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _predicate(skip: Skip) -> Callable[[str], bool]:
    if skip is None:
        return lambda name: False
    if callable(skip):
        return skip
    names = frozenset(skip)
    return names.__contains__


def _same_layout(entry: TensorEntry | None, spec: tuple[str, list[int]]) -> bool:
    return entry is not None and entry.dtype == spec[0] and list(entry.shape) == spec[1]


def place(model: nn.Module, device: torch.device | str | None) -> nn.Module:
    """Move to ``device`` (if given) and switch to eval mode: loading is for inference
    unless a trainer says otherwise (it calls ``model.train()`` itself)."""
    if device is not None:
        model = model.to(device)
    return model.eval()
