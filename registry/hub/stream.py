"""A Hub weight file split into tensor blobs while it downloads (``import-model`` from the Hub).

Each byte is written once, into the tensor blob it belongs to (``store.tensors.tensorstream``): no
temp copy of the whole file is written, read back and deleted. The order of the checks is
the one of a local import, and nothing is published before the whole file is known good:

1. when its header has arrived, before any blob is started: safetensors validity, pickle
   sniffing, tensor names, a tensor also in another weight file, the checkpoint index;
2. the tensors become temp blobs as their bytes arrive, hashed (BLAKE3) on the way, while
   the sink hashes the whole stream (sha256);
3. once every byte is in and the sha256 matches the Hub's, the blobs may be published
   (fsync, sealed, renamed): the caller does it, the last file's while the model loads. A
   wrong hash, a short body or any error removes them all.

A header that fails step 1 is reported only once the whole file verified: bytes damaged in
transit garble headers too, and must read as a transfer error, not as a bad file upstream.
"""

from __future__ import annotations

import threading

from registry.hub.download import HubRepo, RemoteFile
from registry.ingest.folder import check_tensor_names
from registry.workspace import Workspace
from store.errors import SafetensorsError
from store.tensors.tensorfile import TensorFileHeader
from store.tensors.tensorstream import TensorStream


def stream_weight_file(workspace: Workspace, hub: HubRepo, commit: str, f: RemoteFile, seen: dict[str, str],
                       weight_map: dict[str, str] | None, where: str, *, bar: type | None = None,
                       label: str | None = None, seen_lock: threading.Lock | None = None,
                       after: list[threading.Event] = (), checked: threading.Event | None = None) -> TensorStream:
    """Download ``f`` into verified tensor blobs, not yet published: the caller publishes
    them (``publish()``) or removes them (``abort()``). Its tensor names join ``seen``
    (name -> file) as soon as its header is in, under ``seen_lock``: other files may be
    downloading at the same time; ``stored()`` lists them.

    ``after``: set once the files before this one (in the model's order) had their headers
    checked: this one's header waits for them, so a tensor in two files is always reported
    in the later one, as one file at a time would; ``checked`` is set once this one's was.

    ``where``: ``repo@commit12``, which errors about the file's contents name it by.
    """
    shown = f"{where}/{f.path}"
    lock = seen_lock or threading.Lock()

    def check(header: TensorFileHeader) -> None:
        for event in after:
            while not event.wait(0.1):
                if hub.cancel.is_set():
                    raise KeyboardInterrupt
        # Against a copy without this file's own names: the header is checked again if the
        # download starts over.
        with lock:
            others = {name: path for name, path in seen.items() if path != f.path}
            check_tensor_names(header.tensors, f.path, others, shown)
            check_index(weight_map, f.path, [spec.name for spec in header.tensors], where)
            seen.update((spec.name, f.path) for spec in header.tensors)

    def checked_too(header: TensorFileHeader) -> None:
        try:
            check(header)
        finally:
            if checked is not None:
                checked.set()

    stream = TensorStream(workspace.objects, f.size, shown, on_header=checked_too)
    try:
        hub.fetch_into(commit, f, stream, bar=bar, label=label, tmp_dir=workspace.layout.tmp)
        stored = stream.stored()
    except BaseException:
        stream.abort()
        raise
    finally:
        if checked is not None:
            checked.set()
    with lock:
        seen.update((item.spec.name, f.path) for item in stored)
    return stream


def check_index(weight_map: dict[str, str] | None, relpath: str, names: list[str], where: str) -> None:
    """A shard must hold exactly the tensors the checkpoint index assigns to it."""
    if weight_map is None:
        return
    expected = {t for t, shard in weight_map.items() if shard == relpath}
    if set(names) != expected:
        odd = sorted(set(names) ^ expected)[0]
        raise SafetensorsError(f"{where}/{relpath}", f"the checkpoint index and the shard disagree "
                                                     f"about tensor {odd!r}")
