"""A Hub weight file split into tensor blobs while it downloads (``import-model`` from the Hub).

Each byte is written once, into the tensor blob it belongs to (``store.tensorstream``): no
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

from registry.hub.download import HubRepo, RemoteFile
from registry.ingest.folder import check_tensor_names
from registry.workspace import Workspace
from store.errors import SafetensorsError
from store.tensorfile import TensorFileHeader
from store.tensorstream import TensorStream


def stream_weight_file(workspace: Workspace, hub: HubRepo, commit: str, f: RemoteFile, seen: dict[str, str],
                       weight_map: dict[str, str] | None, where: str, *, bar: type | None = None,
                       label: str | None = None) -> TensorStream:
    """Download ``f`` into verified tensor blobs, not yet published: the caller publishes
    them (``publish()``) or removes them (``abort()``). Its tensor names join ``seen``
    (name -> file); ``stored()`` lists them.

    ``where``: ``repo@commit12``, which errors about the file's contents name it by.
    """
    shown = f"{where}/{f.path}"

    def check(header: TensorFileHeader) -> None:
        # Against a copy: the header is checked again if the download starts over.
        check_tensor_names(header.tensors, f.path, dict(seen), shown)
        check_index(weight_map, f.path, [spec.name for spec in header.tensors], where)

    stream = TensorStream(workspace.objects, f.size, shown, on_header=check)
    try:
        hub.fetch_into(commit, f, stream, bar=bar, label=label)
    except BaseException:
        stream.abort()
        raise
    seen.update((item.spec.name, f.path) for item in stream.stored())
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
