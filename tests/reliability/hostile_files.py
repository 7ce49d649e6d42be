"""Hostile files for the hostile-input catalogue: malformed safetensors, pickles with a payload,
remote code. Each builder writes into a model folder and nothing else.

The pickle payloads are real: unpickling one runs ``os.system``/``exec`` and creates the
marker file. Nothing in this module (or the suite) ever unpickles them; the test is that
modelstore never does either, which the marker's absence proves.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

from store.tensors.tensorfile import MAX_HEADER_BYTES

WEIGHTS = "model.safetensors"
HUGE_HEADER = 200_000_000  # 200 MB, twice the limit the safetensors library enforces


def safetensors_bytes(header: dict | bytes, data: bytes = b"") -> bytes:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(body)) + body + data


def _i8(shape: list[int], begin: int, end: int, dtype: str = "I8") -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def _write(content: bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / WEIGHTS).write_bytes(content)
    return write


def _huge_header(folder: Path) -> None:
    """A file that really is 200 MB long (sparse: no disk used), whose header claims all of it.

    Only the size limit can refuse it: the length does not run past the end of the file.
    """
    with open(folder / WEIGHTS, "wb") as f:
        f.write(struct.pack("<Q", HUGE_HEADER) + b'{"a":')
        f.truncate(8 + HUGE_HEADER)


# id -> (writes model.safetensors into the folder, the reason the error must give)
HEADER_PAST_END = struct.pack("<Q", 1000) + b"{}"
MALFORMED_SAFETENSORS: dict[str, tuple[Callable[[Path], None], str]] = {
    "header-past-end": (_write(HEADER_PAST_END),
                        "header length 1000 runs past the end of the 10-byte file"),
    "header-200MB": (_huge_header,
                     f"header length {HUGE_HEADER} exceeds the {MAX_HEADER_BYTES}-byte limit"),
    "shorter-than-length": (_write(b"\x01\x02\x03"),
                            "file is 3 bytes, shorter than the 8-byte header length"),
    "overlapping-offsets": (_write(safetensors_bytes({"a": _i8([8], 0, 8), "b": _i8([4], 4, 8)},
                                                     bytes(8))),
                            "tensor 'b' overlaps the tensor before it"),
    "gapped-offsets": (_write(safetensors_bytes({"a": _i8([8], 0, 8), "b": _i8([4], 12, 16)}, bytes(16))),
                       "4 unused bytes before tensor 'b'"),
    "dtype-shape-vs-span": (_write(safetensors_bytes({"a": _i8([3], 0, 8, "F32")}, bytes(8))),
                            "tensor 'a': F32 [3] needs 12 bytes but data_offsets span 8"),
    "shape-overflow": (_write(safetensors_bytes({"a": _i8([2 ** 40, 2 ** 40], 0, 8, "F32")}, bytes(8))),
                       f"tensor 'a': F32 [{2 ** 40}, {2 ** 40}] needs {2 ** 82} bytes but data_offsets "
                       "span 8"),
    "duplicate-keys": (_write(safetensors_bytes(b'{"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]},'
                                                b'"a":{"dtype":"I8","shape":[1],"data_offsets":[1,2]}}',
                                                bytes(2))),
                       "tensor 'a' appears twice in the header"),
    "trailing-bytes": (_write(safetensors_bytes({"a": _i8([2], 0, 2)}, bytes(2) + b"extra")),
                       "5 trailing bytes after the last tensor"),
    "data-past-end": (_write(safetensors_bytes({"a": _i8([4], 0, 4)}, bytes(2))),
                      "tensor data runs 2 bytes past the end of the file"),
    "unknown-dtype": (_write(safetensors_bytes({"a": _i8([4], 0, 4, "Q4_K")}, bytes(4))),
                      "tensor 'a': unknown dtype 'Q4_K'"),
    "negative-offset": (_write(safetensors_bytes({"a": _i8([2], -2, 0)}, bytes(2))),
                        "tensor 'a': data_offsets must be two non-negative integers"),
    "header-not-object": (_write(safetensors_bytes(b'["a"]')), "header is not a JSON object"),
    "header-not-utf8": (_write(safetensors_bytes(b'{"\xff":1}')), "header is not UTF-8"),
    "metadata-not-strings": (_write(safetensors_bytes({"__metadata__": {"format": 1}})),
                             "__metadata__ must map strings to strings"),
}

# Tensor names become file names in the view (tensor-<name>.safetensors): each must be refused.
HOSTILE_TENSOR_NAMES: dict[str, tuple[str, str]] = {
    "tensor-dotdot": ("../../../outside/evil", "is empty or starts with '.'"),
    "tensor-climb": ("model/../../../../outside/evil", "contains '/', '\\' or control characters"),
    "tensor-absolute": ("/tmp/evil", "contains '/', '\\' or control characters"),
    "tensor-backslash": ("a\\..\\..\\evil", "contains '/', '\\' or control characters"),
    "tensor-hidden": (".evil", "is empty or starts with '.'"),
    "tensor-nul": ("a\x00b", "contains '/', '\\' or control characters"),
    "tensor-newline": ("a\nb", "contains '/', '\\' or control characters"),
    "tensor-300-chars": ("w" * 300, "is too long to be a file name"),
}


def tensor_named(name: str) -> Callable[[Path], None]:
    return _write(safetensors_bytes({name: _i8([2], 0, 2)}, bytes(2)))


def index_naming(shard: str) -> Callable[[Path], None]:
    """A sharded checkpoint whose index points at ``shard`` (a path outside the folder)."""
    def write(folder: Path) -> None:
        index = {"metadata": {}, "weight_map": {"a": shard}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return write


# --- code that must never run ------------------------------------------------------------


class _ShellPayload:
    """Unpickling this runs a shell command (pickle calls ``os.system(command)``)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _ExecPayload:
    """Unpickling this runs Python (pickle calls ``exec(source)``)."""

    def __init__(self, source: str):
        self.source = source

    def __reduce__(self):
        return (exec, (self.source,))


def pickle_payload(marker: Path) -> bytes:
    """A ``pytorch_model.bin`` in the old (pre-zip) torch format: a bare pickle stream."""
    return pickle.dumps({"model.embed_tokens.weight": _ShellPayload(f"touch {shlex.quote(str(marker))}")},
                        protocol=2)


def zip_pickle_payload(marker: Path) -> bytes:
    """What ``torch.save`` writes: a zip archive whose ``data.pkl`` carries the payload."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl",
                         pickle.dumps(_ExecPayload(f"open({str(marker)!r}, 'w').write('pwned')"), protocol=2))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def remote_code(marker: Path) -> dict[str, bytes]:
    """``modeling_evil.py``, which creates ``marker`` as soon as anything imports it."""
    source = (f"open({str(marker)!r}, 'w').write('remote code ran')\n"
              "from transformers import Qwen2Config, Qwen2ForCausalLM\n"
              "class EvilConfig(Qwen2Config):\n    model_type = 'qwen2'\n"
              "class EvilForCausalLM(Qwen2ForCausalLM):\n    config_class = EvilConfig\n")
    return {"modeling_evil.py": source.encode()}


AUTO_MAP = {"AutoConfig": "modeling_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}


def with_auto_map(config_json: bytes, model_type: str | None = None) -> bytes:
    """config.json asking transformers to load the model class from ``modeling_evil.py``."""
    config = json.loads(config_json)
    config["auto_map"] = AUTO_MAP
    if model_type is not None:
        config["model_type"] = model_type
    return json.dumps(config, indent=2, sort_keys=True).encode()
