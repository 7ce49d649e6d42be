"""Models by name or by config: load a registered model with its tokenizer, store a torch
model as a manifest, and create (register) a fresh custom Transformer.

``model_name`` in a config selects a registered model (any architecture in the adapter
table); empty, it selects the project's own Transformer, whose shape is the config's
``[model]`` table and whose tokenizer, unless ``tokenizer`` says otherwise, is the project
tokenizer (byte-level BPE trained on ``data/corpus.txt``, adapters/tokenizer.py), stored as file
blobs in the model's view like any model's tokenizer.
"""

from __future__ import annotations

import fnmatch
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import torch
import torch.nn as nn

from adapters import get_adapter
from adapters.base import Adapter, SaveStats, Skip, place
from adapters.blobs import files_folder, verify_files
from adapters.devices import resolve_device, resolve_dtype
from registry.ops import ConflictPolicy, get_model, register
from registry.checkpoints import is_ref, resolve_checkpoint
from registry.ingest.model_files import TOKENIZER_PATTERNS
from registry.registry_file import RegistryEntry
from registry.view_state import refuse_written_view
from registry.workspace import Workspace
from store.errors import ModelStoreError, Next, Text
from training.errors import TokenizerError
from store.manifest import (
    FileEntry,
    Manifest,
    Origin,
    Source,
    TensorEntry,
    TrainingInfo,
    TrainingOrigin,
    now_iso,
    put_manifest,
)
from training.config import RunConfig, looks_like_path


@dataclass
class LoadedModel:
    name: str  # the registered name, or a label for an unregistered version
    manifest: Manifest
    adapter: Adapter
    model: nn.Module
    tokenizer: object  # a transformers tokenizer
    device: torch.device
    entry: RegistryEntry | None = None  # None for a version that has no name (a checkpoint)


def load_model(workspace: Workspace, name: str, *, device: str | None = "auto", dtype: str | None = "auto",
               tokenizer: str = "") -> LoadedModel:
    """Load a registered model (straight from its manifest's blobs) and its tokenizer.

    ``name`` may also be a checkpoint reference, ``NAME@step-N`` (registry/checkpoints.py).
    A view that was written into is refused (``named_model``), and every blob read is
    verified (``load_version``).
    """
    if is_ref(name):
        _, manifest, _ = resolve_checkpoint(workspace, name)
        return load_version(workspace, manifest, name, device=device, dtype=dtype, tokenizer=tokenizer)
    entry, manifest = named_model(workspace, name)
    loaded = load_version(workspace, manifest, name, view=workspace.root / entry.local_path,
                          device=device, dtype=dtype, tokenizer=tokenizer)
    loaded.entry = entry
    return loaded


def named_model(workspace: Workspace, name: str) -> tuple[RegistryEntry, Manifest]:
    """The registry entry and manifest of ``name``, for a command that loads it: a view that
    something wrote into (a link replaced by a file, a ``model.safetensors`` saved into it)
    is refused with ``ViewWrittenError`` before anything is loaded."""
    entry, manifest = get_model(workspace, name)
    refuse_written_view(workspace, entry, manifest)
    return entry, manifest


def load_version(workspace: Workspace, manifest: Manifest, label: str, *, view: Path | None = None,
                 device: str | None = "auto", dtype: str | None = "auto", tokenizer: str = "") -> LoadedModel:
    """Load any stored model version, registered or not (a training checkpoint's manifest).

    Its own tokenizer comes from ``view`` when it has one, else from its file blobs. Every
    blob is verified against its digest: the files (config, tokenizer, ...) before they are
    read, the tensors while the model is built (``Adapter.load_manifest``); a blob that
    changed is one ``BlobChangedError`` naming ``label`` and the file or tensor.
    """
    adapter = get_adapter(manifest.architecture_type, f" (model {label!r})")
    target = resolve_device(device)
    verify_files(workspace.objects, manifest, label)
    model, check = adapter.load_manifest_verifying(workspace.objects, manifest, dtype=resolve_dtype(dtype),
                                                   label=label)
    try:  # the tensor blobs are still being hashed: load the tokenizer meanwhile
        if tokenizer or view is not None:
            tok = load_tokenizer(workspace, tokenizer, own=(view, adapter) if view is not None else None)
        else:
            with files_folder(workspace.objects, manifest) as folder:
                tok = _load_from_folder(folder, adapter, f"model {label!r}")
    except BaseException:
        if check is not None:
            check.cancel()
        raise
    if check is not None:
        check.join()  # before the model is moved or used: never a model of changed bytes
    model = place(model, target)
    check_tokenizer_fits(tok, adapter.vocab_size(model), label)
    return LoadedModel(name=label, manifest=manifest, adapter=adapter, model=model, tokenizer=tok,
                       device=target)


# --- tokenizers -------------------------------------------------------------------------------


def load_tokenizer(workspace: Workspace, spec: str, *, own: tuple[Path, Adapter] | None = None):
    """The tokenizer ``spec`` names: "" for the model's own (``own``: its view and adapter),
    a folder, or a registered model's name."""
    if not spec:
        if own is None:
            raise TokenizerError("no tokenizer was given")
        folder, adapter = own
        return _load_from_folder(folder, adapter, f"the view {folder}")
    if looks_like_path(spec) or (os.path.isdir(spec) and spec not in workspace.read_registry().models):
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise TokenizerError(f"tokenizer folder {spec} does not exist", "set tokenizer to a folder "
                                 "with tokenizer.json, or to a registered model's name")
        return _load_from_folder(folder, None, f"folder {folder}")
    try:
        entry, manifest = get_model(workspace, spec)
    except ModelStoreError as e:
        raise TokenizerError(f"tokenizer {spec!r}: {e.message}", e.hint) from None
    return _load_from_folder(workspace.root / entry.local_path, get_adapter(manifest.architecture_type),
                             f"model {spec!r}")


def _load_from_folder(folder: Path, adapter: Adapter | None, where: str):
    if not any(_is_tokenizer_file(p.name) for p in folder.iterdir()):
        raise TokenizerError(f"{where} has no tokenizer files (tokenizer.json, vocab, merges, ...)",
                             Text("pass `", Next("generate", "NAME", "--tokenizer", "FOLDER_OR_MODEL"),
                                  "`, or set tokenizer = \"<model name or folder>\" in the config"))
    if adapter is None:
        model_type = _model_type(folder)
        from adapters import ADAPTERS

        adapter = get_adapter(model_type) if model_type in ADAPTERS else Adapter()
    try:
        return adapter.load_tokenizer(folder)
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TokenizerError(f"cannot load a tokenizer from {where}: {first}") from None


def _model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def _is_tokenizer_file(name: str) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in TOKENIZER_PATTERNS)


def check_tokenizer_fits(tokenizer, vocab_size: int, model: str) -> None:
    """Every token id the tokenizer can produce must have a row in the model's embedding."""
    if len(tokenizer) > vocab_size:
        raise TokenizerError(f"the tokenizer has {len(tokenizer)} tokens but model {model!r} has only "
                             f"{vocab_size} embedding rows",
                             "use the model's own tokenizer (remove the tokenizer setting) or a smaller one")


def tokenizer_files(workspace: Workspace, spec: str, *, vocab_size: int) -> dict[str, bytes | FileEntry]:
    """The tokenizer files a new custom model stores: the project tokenizer of ``vocab_size``
    tokens (spec ""), a registered model's (reused blobs), or a folder's."""
    if not spec:
        from adapters.tokenizer import train_tokenizer

        with tempfile.TemporaryDirectory(prefix="modelstore-tok-") as tmp:
            try:
                train_tokenizer(tmp, vocab_size=vocab_size)
            except ValueError as e:
                raise TokenizerError(f"cannot train the project tokenizer with {vocab_size} tokens: {e}",
                                     "choose another [model] vocab_size") from None
            return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir())}
    if looks_like_path(spec) or (os.path.isdir(spec) and spec not in workspace.read_registry().models):
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise TokenizerError(f"tokenizer folder {spec} does not exist")
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
                if p.is_file() and _is_tokenizer_file(p.name)}
    _, manifest = get_model(workspace, spec)
    return {path: entry for path, entry in manifest.files.items()
            if "/" not in path and _is_tokenizer_file(path)}


# --- storing a torch model ---------------------------------------------------------------------


@dataclass
class StoredModel:
    digest: str
    manifest: Manifest
    stats: SaveStats


def store_model(workspace: Workspace, adapter: Adapter, model: nn.Module, *,
                files: dict[str, bytes | FileEntry], source: Source, model_id: str,
                parents: Iterable[str] = (), origin: Origin | None = None,
                training: TrainingInfo | None = None, license: str | None = None,
                skip: Skip = None, known: dict[str, TensorEntry] | None = None) -> StoredModel:
    """Write ``model``'s tensors and ``files`` as blobs, then its manifest (not registered).

    ``files``: relative path -> bytes to store, or the ``FileEntry`` of a blob already in
    the store (a parent's config or tokenizer: reused, not rewritten). ``skip``/``known``:
    see ``Adapter.save_tensors`` (frozen tensors are neither hashed nor written).
    """
    workspace.ensure_store()
    saved = adapter.save_tensors(model, workspace.objects, skip=skip, known=known)
    entries = {}
    for relpath, content in files.items():
        if isinstance(content, FileEntry):
            entries[relpath] = content
        else:
            put = workspace.objects.put_bytes(content)
            entries[relpath] = FileEntry(digest=put.digest, size=put.size)
    manifest = Manifest(
        architecture_type=adapter_model_type(adapter, model),
        model_id=model_id,
        source=source,
        created_at=now_iso(),
        license=license,
        params=sum(_numel(t.shape) for t in saved.tensors.values()),
        files=entries,
        tensors=saved.tensors,
        parents=list(parents),
        origin=origin,
        training=training,
    )
    return StoredModel(digest=put_manifest(workspace.objects, manifest), manifest=manifest, stats=saved.stats)


def adapter_model_type(adapter: Adapter, model: nn.Module) -> str:
    """The model_type config.json records (what selects the adapter when it is loaded)."""
    return json.loads(adapter.config_files(model)["config.json"])["model_type"]


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@dataclass
class CustomModel:
    """A fresh custom Transformer, not stored yet: the start of training from scratch."""

    adapter: Adapter
    model: nn.Module
    files: dict[str, bytes | FileEntry]  # config.json and the tokenizer's files
    tokenizer: object
    shape: object  # its TransformerConfig


def build_custom_model(workspace: Workspace, config: RunConfig) -> CustomModel:
    """The custom Transformer of ``config``'s [model] table (seeded random init), with the
    project tokenizer or the one ``tokenizer`` names, smoke-tested."""
    from adapters.custom import MODEL_TYPE, config_dict

    files = tokenizer_files(workspace, config.tokenizer, vocab_size=config.model.vocab_size)
    with tempfile.TemporaryDirectory(prefix="modelstore-tok-") as tmp:
        for relpath, content in files.items():
            data = content if isinstance(content, bytes) else workspace.objects.read_bytes(content.digest)
            Path(tmp, relpath).write_bytes(data)
        tok = _load_from_folder(Path(tmp), get_adapter(MODEL_TYPE), "the tokenizer")
    vocab = len(tok) if config.tokenizer else config.model.vocab_size
    shape = config.model.transformer_config(vocab_size=vocab, eos_token_id=tok.eos_token_id)
    adapter = get_adapter(MODEL_TYPE)
    model = adapter.build(config_dict(shape), seed=config.seed, dtype=resolve_dtype(config.dtype))
    adapter.smoke_test(model)
    return CustomModel(adapter=adapter, model=model, files={**adapter.config_files(model), **files},
                       tokenizer=tok, shape=shape)


def create_custom_model(workspace: Workspace, name: str, config: RunConfig, *,
                        on_conflict: ConflictPolicy = "cancel") -> tuple[RegistryEntry, StoredModel]:
    """Build the custom Transformer of ``config`` (seeded random init) and register it as
    ``name`` with source "custom", untrained (step 0)."""
    built = build_custom_model(workspace, config)
    stored = store_model(
        workspace, built.adapter, built.model, files=built.files, source="custom",
        model_id=name, origin=TrainingOrigin(run=name),
        training=TrainingInfo(step=0, settings={"model": msgspec.to_builtins(built.shape),
                                                "seed": config.seed}),
    )
    entry = register(workspace, name, stored.digest, stored.manifest, on_conflict=on_conflict)
    return entry, stored
