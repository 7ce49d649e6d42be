"""Helpers shared by the probes. Probes run with a consumer's interpreter and import nothing
of the project: only the standard library, torch, safetensors and the consumer itself."""

from __future__ import annotations

import argparse
import json
import re
import sys
from importlib import metadata
from pathlib import Path


def parse(extra=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--view", type=Path, required=True)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="a folder of the probe's own")
    parser.add_argument("--out", type=Path, required=True, help="the JSON result")
    if extra:
        extra(parser)
    return parser.parse_args()


def version(*packages: str) -> str:
    return " ".join(f"{p} {metadata.version(p)}" for p in packages)


def report(out: Path, *, version: str, compared: str, differences: list[str], notes: str = "") -> None:
    """Write the probe's verdict: ``differences`` empty means the view behaved as the source."""
    result = {"version": version, "compared": compared, "differences": differences, "notes": notes}
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    sys.exit(0)


ERROR_LINE = re.compile(r"\b(\w+(?:Error|Exception): .*)")


def error_line(text: str) -> str:
    """The root cause in an error's text or a child's log: the first ``XxxError: ...`` line that
    is not a wrapper's ("... See root cause above")."""
    found = [m.group(1).strip() for m in map(ERROR_LINE.search, text.splitlines()) if m]
    causes = [line for line in found if "root cause" not in line]
    return ((causes or found or [line.strip() for line in text.splitlines() if line.strip()] or ["no output"])[0])[:300]


def failure(what: str, exc: BaseException) -> str:
    """One line for a consumer's failure. (torch DCP raises ``CheckpointException``, a
    ``BaseException``, with each rank's traceback in its text.)"""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        raise exc
    text = str(exc)
    line = error_line(text) if ERROR_LINE.search(text) else f"{type(exc).__name__}: {text.strip()[:300]}"
    return f"{what} failed: {line}"


def file_tensors(folder: Path) -> dict:
    """Every tensor of a Hugging Face folder, read with safetensors (the index, else model.safetensors)."""
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file()
             else ["model.safetensors"])
    tensors = {}
    for name in files:
        tensors.update(load_file(folder / name))
    return tensors


def tensor_differences(a: dict, b: dict, what: str) -> list[str]:
    """Names missing on either side, and tensors whose dtype, shape or bytes differ."""
    import torch

    out = []
    if set(a) != set(b):
        out.append(f"{what}: tensor names differ (only in view: {sorted(set(a) - set(b))[:3]}, "
                   f"only in source: {sorted(set(b) - set(a))[:3]})")
    for name in sorted(set(a) & set(b)):
        x, y = a[name], b[name]
        if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x.cpu(), y.cpu()):
            out.append(f"{what}: tensor {name} differs")
    return out
