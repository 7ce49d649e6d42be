"""torch DCP reads the view: ``HuggingFaceStorageReader`` over the view and over the source
fills the same state dict, and a DCP save of the view's state dict loads back unchanged."""

from __future__ import annotations

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter, HuggingFaceStorageReader

from _common import failure, file_tensors, parse, report, tensor_differences, version


def hf_load(folder, like: dict) -> dict:
    state = {name: torch.empty_like(t) for name, t in like.items()}
    dcp.load(state, storage_reader=HuggingFaceStorageReader(str(folder)), no_dist=True)
    return state


def main() -> None:
    args = parse()
    source = file_tensors(args.source)
    differences = []
    try:
        from_view = hf_load(args.view, source)
    except BaseException as exc:  # the consumer's error is the finding
        from_view = None
        differences.append(failure("HuggingFaceStorageReader(view)", exc))
    from_source = hf_load(args.source, source)
    differences += tensor_differences(from_source, source, "HuggingFaceStorageReader(source) vs source files")
    if from_view is not None:
        differences += tensor_differences(from_view, from_source, "HuggingFaceStorageReader: view vs source")
        # The view's state dict through a DCP checkpoint and back.
        saved = args.work / "dcp-view"
        dcp.save(from_view, storage_writer=FileSystemWriter(str(saved)), no_dist=True)
        back = {name: torch.empty_like(t) for name, t in from_view.items()}
        dcp.load(back, storage_reader=FileSystemReader(str(saved)), no_dist=True)
        differences += tensor_differences(back, source, "DCP save/load of the view's state dict vs source")
    report(args.out, version=version("torch"),
           compared=f"HuggingFaceStorageReader(view) vs (source), {len(source)} tensors; dcp.save + dcp.load round trip",
           differences=differences)


if __name__ == "__main__":
    main()
