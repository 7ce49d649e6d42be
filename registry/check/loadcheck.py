"""The load check of an import: the stored model loads, and a short forward pass is finite.

Run after every blob is stored and before anything is registered, on a staging view in
``.modelstore/tmp/`` (links to the blobs in objects/ plus the generated index, in the view's
own layout: tensor links at the top, named as ``registry.views`` names them), so a model that does not load is never registered. Missing or
wrongly shaped tensors count as failures: transformers would silently initialise them at
random. A model too big for the memory available is not loaded; the check says so.

The model is loaded in a worker process (``python -m registry.check.loadcheck``), for three reasons:
importing torch and transformers takes seconds, and the worker does it while the import is
still downloading (``start_worker``); a crash inside torch becomes a failed check instead
of a dead import; and the importing process never holds torch or the model, so it exits
fast and small. One worker serves every check of a process, one JSON line per request.

The model is built by its architecture's adapter (``adapters.get_adapter``), exactly as
``generate`` and ``train`` will load it (never with remote code): ``_load_and_run``, which
runs in the worker.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from registry.report import human_bytes
from registry.views import INDEX_FILENAME, render_index, tensor_relpath
from registry.workspace import Workspace
from store.fs import fsops
from registry.errors import ModelLoadError
from store.errors import ModelStoreError, StoreIOError
from store.manifest import Manifest

PROBE_TOKENS = (1, 2, 3, 4)
# Loading needs the weights once in memory, plus the interpreter, torch and activations.
MEMORY_FACTOR = 1.3
MEMORY_OVERHEAD = 1 << 30
PROJECT_ROOT = Path(__file__).resolve().parents[2]


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


class Unpublished(Protocol):
    """Verified blobs not yet in the store (``store.tensors.tensorstream.TensorStream`` is one)."""

    def awaiting(self) -> dict[str, Path]: ...  # digest -> temp blob

    def publish(self) -> None: ...


def check_loads(workspace: Workspace, manifest: Manifest, *, unpublished: Unpublished | None = None) -> LoadCheck:
    """Load ``manifest``'s model from a staging view and run a forward pass on a few tokens.

    ``unpublished``: blobs of the manifest still waiting to be published. They are published
    while the model loads from hard links to them, or first where the filesystem refuses a
    hard link (an error before either leaves them waiting, for the caller to settle).
    """
    publish = unpublished.publish if unpublished is not None else None
    needed = int(manifest.tensor_bytes * MEMORY_FACTOR) + MEMORY_OVERHEAD
    available = available_memory()
    if available is not None and needed > available:
        if publish is not None:
            publish()
        return LoadCheck(False, f"skipped: loading needs about {human_bytes(needed)} of memory, "
                                f"{human_bytes(available)} is available")
    start = time.perf_counter()
    awaiting = unpublished.awaiting() if unpublished is not None else {}
    staging = _staging_view(workspace, manifest, awaiting)
    if staging is None:  # a waiting blob cannot be hard-linked: publish, then link the objects
        publish()  # type: ignore[misc]  (not None: only awaited blobs can fail to link)
        publish, staging = None, _staging_view(workspace, manifest, {})
    try:
        request = {"folder": str(staging), "model_id": manifest.model_id,
                   "model_type": manifest.architecture_type}
        reply = _WORKER.ask(request, manifest.model_id, manifest.architecture_type, meanwhile=publish)
    finally:
        fsops.rmtree(staging)  # type: ignore[arg-type]
    if not reply.get("ok"):
        raise ModelLoadError(manifest.model_id, str(reply.get("reason")))
    return LoadCheck(True, reply["detail"], time.perf_counter() - start, list(reply.get("warnings", [])))


def expected_tensors(config: dict, model_id: str) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """What ``config`` implies about its checkpoint (tensor name -> shape), and the patterns of
    tensors its model skips by design: from the model built on the meta device in the worker
    (``Adapter.expected_tensors``), for members that have no closed form (adapters/shapes.py);
    in this process if it has transformers loaded already."""
    if in_process():
        reply = _expected_tensors(config)
    else:
        reply = _WORKER.ask({"expect": config}, model_id, config.get("model_type") or "")
    if not reply.get("ok"):
        raise ModelLoadError(model_id, str(reply.get("reason")))
    return {k: tuple(v) for k, v in reply["tensors"].items()}, list(reply["kept"])


def in_process() -> bool:
    """Whether this process has transformers loaded already (training, a library caller): then
    a meta-device build costs milliseconds here, and the worker is not needed for it."""
    return "transformers" in sys.modules


def start_worker(model_type: str | None = None) -> None:
    """Start the worker now, so it imports torch and transformers while the caller downloads.

    Called again with the ``model_type`` once it is known, the running worker also imports
    that architecture's model code ahead of the first check."""
    _WORKER.start(model_type)


def _staging_view(workspace: Workspace, manifest: Manifest, awaiting: dict[str, Path]) -> Path | None:
    """The view the model will have, in tmp/: links to its blobs, those of ``awaiting`` (digest
    -> temp blob) hard links to the temp blobs, which publishing then renames. None (and
    nothing left) if one of those cannot be hard-linked."""
    staging = fsops.make_temp_dir(workspace.layout.tmp, "loadcheck")
    try:
        links = {path: f.digest for path, f in manifest.files.items()}
        links.update((tensor_relpath(name), t.digest) for name, t in manifest.tensors.items())
        for relpath, digest in sorted(links.items()):
            link = staging / relpath
            fsops.mkdirs(link.parent)
            waiting = awaiting.get(digest)
            if not _link_blob(waiting or workspace.objects.path(digest), link, may_symlink=waiting is None):
                fsops.rmtree(staging)
                return None
        # Scratch, read once and removed: durability would only cost an fsync.
        fsops.write_scratch(staging / INDEX_FILENAME, render_index(manifest))
    except BaseException:
        fsops.rmtree(staging)
        raise
    return staging


def _link_blob(target: Path, link: Path, *, may_symlink: bool) -> bool:
    """A hard link where the filesystem allows one: it takes no new inode and no block, where
    a symlink to a blob's path (longer than an inode holds) takes both, and a filesystem
    without a journal makes every new inode scan past the recently deleted ones (0.3 s for
    a view of 300 tensors on the dev machine, right after a gc). Where it does not (a shared
    store's blob someone else owns, with ``fs.protected_hardlinks``): a symlink, as the view
    has, if ``may_symlink``, else False (a temp blob is renamed later: a symlink would break)."""
    try:
        fsops.hardlink(target, link)
    except StoreIOError:
        raise
    except OSError:
        if not may_symlink:
            return False
        fsops.symlink(str(target), link)
    return True


# --- the worker process, as seen from the importing process -------------------------------


class _Worker:
    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.preloaded: set[str] = set()  # model types whose code the running worker imports
        self.lock = threading.Lock()

    def start(self, model_type: str | None = None) -> None:
        with self.lock:
            running = self.proc is not None and self.proc.poll() is None
            proc = self._start(model_type)
            if running and model_type and model_type not in self.preloaded:
                try:
                    proc.stdin.write(json.dumps({"preload": model_type}) + "\n")
                    proc.stdin.flush()
                except BrokenPipeError:
                    return  # it died: the check will start another, and report it if that dies too
                self.preloaded.add(model_type)

    def _start(self, model_type: str | None) -> subprocess.Popen:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                                        os.environ.get("PYTHONPATH")]))}
        debug = os.environ.get("MODELSTORE_DEBUG") == "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "registry.check.loadcheck", *([model_type] if model_type else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None if debug else subprocess.DEVNULL,
            cwd=PROJECT_ROOT, env=env, text=True, bufsize=1,
        )
        self.preloaded = {model_type} if model_type else set()
        return self.proc

    def ask(self, request: dict, model_id: str, model_type: str,
            meanwhile: Callable[[], None] | None = None) -> dict:
        """Send ``request`` and return the reply; ``meanwhile`` runs while the worker works
        (if it raises, the worker is stopped: its answer is not wanted any more)."""
        with self.lock:
            proc = self._start(model_type)
            try:
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
                sent = True
            except BrokenPipeError:
                sent = False
            if meanwhile is not None:
                try:
                    meanwhile()
                except BaseException:
                    self.stop()
                    raise
            line = proc.stdout.readline() if sent else ""
            if not line:
                code = proc.wait()
                self.proc = None
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                raise ModelLoadError(model_id, f"the process loading the model died ({how}); "
                                               "set MODELSTORE_DEBUG=1 to see its output")
            return json.loads(line)

    def stop(self, *, reap: bool = True) -> None:
        """End the worker at once: it writes nothing, so there is nothing to wait for.

        ``reap=False`` (at exit) does not wait while the kernel tears the worker down (torch,
        a loaded model: about 0.1 s): the command returns now, and init reaps it."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            if reap:
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass


_WORKER = _Worker()
atexit.register(_WORKER.stop, reap=False)


# --- the worker process itself -------------------------------------------------------------


def _serve(model_type: str | None) -> None:
    """Answer load-check requests, one JSON line each, until stdin ends."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the importing process's to handle
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the replies
    from registry.hub.sink import keep_freed_memory

    keep_freed_memory()
    with _importing():
        _preload(model_type)
    for line in sys.stdin:
        request = json.loads(line)
        if "preload" in request:  # a model type now known: import its code, no reply
            with _importing():
                _preload_model(request["preload"])
            continue
        try:
            if "expect" in request:
                reply = _expected_tensors(request["expect"])
            else:
                reply = _load_and_run(request["folder"], request["model_id"], request["model_type"])
        except ModelLoadError as e:
            reply = {"ok": False, "reason": e.reason}
        except Exception as e:  # noqa: BLE001 - any failure to load is the finding
            reply = {"ok": False, "reason": f"loading failed ({type(e).__name__}: {_first_line(e)})"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    replies.close()
    os._exit(0)  # skip the interpreter's slow teardown of torch: there is nothing left to save


@contextmanager
def _importing():
    """Imports without the cyclic garbage collector: importing torch and transformers builds
    hundreds of thousands of long-lived objects, and the collector's passes over them took
    about 40% of the worker's start-up (4.0 s -> 2.4 s on the 2-core dev machine). What the
    imports built is then frozen out of later collections."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _preload(model_type: str | None) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        import torch  # noqa: F401
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText  # noqa: F401

        import adapters.qwen  # noqa: F401
    except Exception:  # noqa: BLE001 - a request will report it
        pass
    if model_type:
        _preload_model(model_type)


def _preload_model(model_type: str) -> None:
    import importlib

    if not model_type.isidentifier():
        return
    try:
        importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    except Exception:  # noqa: BLE001 - a request will report it
        pass


def _expected_tensors(config: dict) -> dict:
    from adapters import get_adapter

    adapter = get_adapter(config.get("model_type"))
    try:
        tensors = adapter.expected_tensors(config)
        kept = adapter.kept_by_design_for(config)
    except ModelStoreError as e:
        return {"ok": False, "reason": e.message}
    except Exception as e:  # noqa: BLE001 - a config transformers cannot build is the finding
        return {"ok": False, "reason": f"config.json does not build a model ({type(e).__name__}: {_first_line(e)})"}
    return {"ok": True, "tensors": {k: v[1] for k, v in tensors.items()}, "kept": kept}


def _load_and_run(folder: str, model_id: str, model_type: str) -> dict:
    from adapters import get_adapter

    adapter = get_adapter(model_type)
    try:
        model = adapter.load_folder(Path(folder))
    except ModelStoreError as e:  # missing, unexpected or misshapen tensors, a bad config
        # The staging folder is an implementation detail: name the model instead.
        raise ModelLoadError(model_id, f"loading failed: {e.message.replace(folder, model_id)}") from e
    except Exception as e:  # noqa: BLE001 - any failure to load is the finding
        raise ModelLoadError(model_id, f"loading failed ({type(e).__name__}: {_first_line(e)})") from e
    try:
        try:
            adapter.smoke_test(model)
            image = adapter.image_check(model, Path(folder))
        except ModelStoreError as e:
            raise ModelLoadError(model_id, e.message.replace(folder, model_id)) from e
        except Exception as e:  # noqa: BLE001 - a processor or vision tower that fails is the finding
            raise ModelLoadError(model_id, f"the image pass failed ({type(e).__name__}: {_first_line(e)})") from e
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        detail = (f"loads as {type(model).__name__} ({dtype}); forward pass on a few tokens"
                  + (f" and {image}" if image else ": finite logits"))
        return {"ok": True, "detail": detail, "warnings": []}
    finally:
        del model
        gc.collect()


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


if __name__ == "__main__":
    _serve(sys.argv[1] if len(sys.argv) > 1 else None)
