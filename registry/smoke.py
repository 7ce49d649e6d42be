"""The load check of an import: the stored model loads, and a short forward pass is finite.

Run after every blob is stored and before anything is registered, on a staging view in
``.modelstore/tmp/`` (symlinks into objects/ plus the generated index: exactly what the
real view will hold), so a model that does not load is never registered. Missing or
wrongly shaped tensors count as failures: transformers would silently initialise them at
random. A model too big for the memory available is not loaded; the check says so.

Today the model is built by stock ``transformers.AutoModelForCausalLM`` (never with remote
code); it moves to the architecture adapters (``adapters.get_adapter``) once they land.
torch is imported only here, inside the function.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from registry.report import human_bytes
from registry.views import render_index, tensor_relpath, INDEX_FILENAME
from registry.workspace import Workspace
from store import fsops
from store.errors import ModelLoadError
from store.manifest import Manifest

PROBE_TOKENS = (1, 2, 3, 4)
# Loading needs the weights once in memory, plus the interpreter, torch and activations.
MEMORY_FACTOR = 1.3
MEMORY_OVERHEAD = 1 << 30


@dataclass
class LoadCheck:
    ran: bool
    detail: str  # one line for the status output
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check_loads(workspace: Workspace, manifest: Manifest) -> LoadCheck:
    """Load ``manifest``'s model from a staging view and run a forward pass on a few tokens."""
    needed = int(manifest.tensor_bytes * MEMORY_FACTOR) + MEMORY_OVERHEAD
    available = available_memory()
    if available is not None and needed > available:
        return LoadCheck(False, f"skipped: loading needs about {human_bytes(needed)} of memory, "
                                f"{human_bytes(available)} is available")
    start = time.perf_counter()
    staging = _staging_view(workspace, manifest)
    try:
        check = _load_and_run(str(staging), manifest.model_id)
    finally:
        fsops.rmtree(staging)
    check.seconds = time.perf_counter() - start
    return check


def _staging_view(workspace: Workspace, manifest: Manifest):
    staging = fsops.make_temp_dir(workspace.layout.tmp, "loadcheck")
    try:
        links = {path: f.digest for path, f in manifest.files.items()}
        links.update((tensor_relpath(name), t.digest) for name, t in manifest.tensors.items())
        for relpath, digest in sorted(links.items()):
            link = staging / relpath
            fsops.mkdirs(link.parent)
            fsops.symlink(str(workspace.objects.path(digest)), link)
        fsops.atomic_write(staging / INDEX_FILENAME, render_index(manifest), staging)
    except BaseException:
        fsops.rmtree(staging)
        raise
    return staging


def _load_and_run(folder: str, model_id: str) -> LoadCheck:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False,
                                                           output_loading_info=True)
    except Exception as e:  # noqa: BLE001 - any failure to load is the finding
        raise ModelLoadError(model_id, f"loading failed ({type(e).__name__}: {_first_line(e)})") from e
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    missing, mismatched = sorted(info["missing_keys"]), sorted(info["mismatched_keys"])
    if missing:
        raise ModelLoadError(model_id, f"the checkpoint lacks {len(missing)} tensor(s) the model needs, "
                                       f"e.g. {missing[0]!r}")
    if mismatched:
        raise ModelLoadError(model_id, f"tensor {mismatched[0][0]!r} has the wrong shape")
    warnings = [f"the checkpoint has {len(info['unexpected_keys'])} tensor(s) the model does not use, "
                f"e.g. {sorted(info['unexpected_keys'])[0]!r}"] if info["unexpected_keys"] else []
    vocab = model.config.get_text_config().vocab_size
    tokens = torch.tensor([[t % vocab for t in PROBE_TOKENS]])
    with torch.inference_mode():
        logits = model(tokens).logits
    if tuple(logits.shape) != (1, len(PROBE_TOKENS), vocab):
        raise ModelLoadError(model_id, f"the forward pass gave logits of shape {tuple(logits.shape)}")
    if not bool(torch.isfinite(logits).all()):
        raise ModelLoadError(model_id, "the forward pass gave non-finite logits (NaN or inf)")
    detail = (f"loads as {type(model).__name__} ({model.dtype}); forward pass on {len(PROBE_TOKENS)} tokens: "
              f"finite logits")
    return LoadCheck(True, detail, warnings=warnings)


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
