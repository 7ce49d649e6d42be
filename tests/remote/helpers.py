"""Helpers of the remote tests: a fine-tune without training, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fine_tune(ws, base: str, name: str, changed: int = 1):
    """Register a fine-tune of ``base`` whose first ``changed`` tensors are new (no training)."""
    import msgspec

    from registry.ops import register
    from store.manifest import TensorEntry, now_iso

    entry = ws.read_registry().models[base]
    manifest = ws.manifest(entry.manifest)
    tensors = dict(manifest.tensors)
    for tname in sorted(tensors)[:changed]:
        t = tensors[tname]
        data = bytes([len(name) % 251 + 1]) * t.nbytes
        put = ws.objects.put_tensor(tname, t.dtype, t.shape, data)
        tensors[tname] = TensorEntry(digest=put.digest, dtype=t.dtype, shape=t.shape, nbytes=t.nbytes)
    child = msgspec.structs.replace(manifest, tensors=tensors, parents=[entry.manifest], source="finetuned",
                                    created_at=now_iso(), origin=None)
    return register(ws, name, None, child, fine_tuned_from=base)


def run_cli(root: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "--root", str(root), *args],
                            capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stderr}")
    return result
