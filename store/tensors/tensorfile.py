"""Safetensors at the byte level: strict header parsing and canonical one-tensor blobs.

Tensors are never decoded: a file is split by reading its JSON header and copying byte
ranges. The parser is strict because files come from strangers: every check that the
safetensors format implies is made before a single byte is trusted (header inside the
file and below 100 MB, known dtypes, shapes matching their byte spans, offsets that tile
the data section exactly with no gap, overlap or trailing bytes, no duplicate names).

A *canonical* blob holds exactly one tensor under its name, with fixed metadata
``{"format": "pt"}``, a compact JSON header with sorted keys, padded with spaces to a
multiple of 8 bytes. The same tensor therefore always yields the same bytes and the same
digest, whichever file or shard it came from.
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from store.codec import DuplicateKeyError, no_duplicate_keys
from store.errors import PickleWeightsError, SafetensorsError

# Bytes per element of every dtype the safetensors format defines with a whole-byte size.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
MAX_HEADER_BYTES = 100_000_000  # the limit the safetensors library itself enforces
CANONICAL_METADATA = {"format": "pt"}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a safetensors file: its name, dtype, shape and absolute byte span."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute offset of the first data byte in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class TensorFileHeader:
    tensors: list[TensorSpec]  # in file order
    metadata: dict[str, str]
    data_start: int


def sniff_pickle(head: bytes) -> str | None:
    """Name the pickle-based format ``head`` starts with, or None."""
    if head.startswith(b"PK\x03\x04"):
        return " (a zip archive: PyTorch's torch.save format)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return " (a pickle stream)"
    return None


def read_header(path: Path | str, file_size: int | None = None, *, fd: int | None = None,
                name: str | None = None) -> TensorFileHeader:
    """Parse and validate a safetensors header; raise ``SafetensorsError`` with the reason.

    ``name`` is what errors call the file when ``path`` means nothing to the user (a download's
    temp file): e.g. ``Qwen/Qwen2.5-0.5B@abc123/model.safetensors``.
    """
    if fd is None:
        with open(path, "rb") as f:
            return read_header(path, file_size, fd=f.fileno(), name=name)
    path = Path(name) if name is not None else Path(path)
    size = os.fstat(fd).st_size if file_size is None else file_size
    header_len = header_length(path, os.pread(fd, 8, 0), size)
    raw = os.pread(fd, header_len, 8)
    if len(raw) != header_len:
        raise SafetensorsError(path, "file ended inside the header")
    return parse_header(path, raw, size)


def header_length(path: Path, head: bytes, size: int) -> int:
    """The JSON header's length, from the file's first 8 bytes (all of them if it is shorter).

    Refuses what cannot be safetensors of ``size`` bytes, naming pickle formats as such.
    """
    kind = sniff_pickle(head)
    if len(head) < 8:
        if kind:
            raise PickleWeightsError(path, kind)
        raise SafetensorsError(path, f"file is {size} bytes, shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", head[:8])
    if kind and header_len > size:
        raise PickleWeightsError(path, kind)
    if header_len > MAX_HEADER_BYTES:
        raise SafetensorsError(path, f"header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + header_len > size:
        raise SafetensorsError(path, f"header length {header_len} runs past the end of the {size}-byte file")
    return header_len


def parse_header(path: Path, raw: bytes, file_size: int) -> TensorFileHeader:
    data_start = 8 + len(raw)
    if not raw.lstrip().startswith(b"{"):
        raise SafetensorsError(path, "header is not a JSON object")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    except UnicodeDecodeError:
        raise SafetensorsError(path, "header is not UTF-8") from None
    except DuplicateKeyError as e:
        raise SafetensorsError(path, f"tensor {e.key!r} appears twice in the header") from None
    except ValueError as e:
        raise SafetensorsError(path, f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(path, "header is not a JSON object")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise SafetensorsError(path, "__metadata__ must map strings to strings")

    specs = [_tensor_spec(path, name, info, data_start) for name, info in header.items()]
    _check_tiling(path, specs, data_start, file_size)
    return TensorFileHeader(tensors=specs, metadata=metadata, data_start=data_start)




def _tensor_spec(path: Path, name: str, info: object, data_start: int) -> TensorSpec:
    if not name:
        raise SafetensorsError(path, "a tensor has an empty name")
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise SafetensorsError(path, f"tensor {name!r}: entry must have exactly dtype, shape, data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise SafetensorsError(path, f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise SafetensorsError(path, f"tensor {name!r}: shape must be a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise SafetensorsError(path, f"tensor {name!r}: data_offsets must be two non-negative integers")
    begin, end = offsets
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if end < begin or end - begin != expected:
        raise SafetensorsError(
            path,
            f"tensor {name!r}: {dtype} {shape} needs {expected} bytes but data_offsets span {end - begin}",
        )
    return TensorSpec(name, dtype, tuple(shape), data_start + begin, data_start + end)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_tiling(path: Path, specs: list[TensorSpec], data_start: int, file_size: int) -> None:
    """The tensors must cover the data section exactly: no gap, no overlap, nothing after."""
    cursor = data_start
    for spec in sorted(specs, key=lambda s: (s.start, s.end)):
        if spec.start < cursor:
            raise SafetensorsError(path, f"tensor {spec.name!r} overlaps the tensor before it")
        if spec.start > cursor:
            raise SafetensorsError(path, f"{spec.start - cursor} unused bytes before tensor {spec.name!r}")
        cursor = spec.end
    if cursor < file_size:
        raise SafetensorsError(path, f"{file_size - cursor} trailing bytes after the last tensor")
    if cursor > file_size:
        raise SafetensorsError(path, f"tensor data runs {cursor - file_size} bytes past the end of the file")


def canonical_header(name: str, dtype: str, shape: tuple[int, ...] | list[int], nbytes: int) -> bytes:
    """The first bytes of the canonical one-tensor blob; the tensor's data follows them."""
    return _canonical_header(name, dtype, tuple(shape), nbytes)


@functools.lru_cache(maxsize=8192)  # blob sizes are asked for every tensor, several times a command
def _canonical_header(name: str, dtype: str, shape: tuple[int, ...], nbytes: int) -> bytes:
    header = {
        "__metadata__": CANONICAL_METADATA,
        name: {"data_offsets": [0, nbytes], "dtype": dtype, "shape": list(shape)},
    }
    raw = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw
