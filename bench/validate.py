"""Deep validation speed: ``validate-registry`` on the 0.5B-shaped model, next to sha256sum.

What is measured: ``registry.check.validate.validate(workspace, deep=True)`` on a workspace holding
the Qwen2.5-0.5B-shaped model (``bench.make_model``, about 1 GB in 290 tensor blobs plus
config and tokenizer files), with a warm page cache: every object is read once before
timing. It re-hashes every object (BLAKE3) and checks the registry, manifest and view.
The baseline is coreutils ``sha256sum`` over exactly the same object files, in the same
run, alternating with the validation so both see the same machine state. The figure is
the median over ``--runs`` of each; the target is at least 3 GB/s on 2 cores.

Usage::

    python -m bench.validate [--model-dir DIR] [--runs 5] [--check]

``--check`` exits 1 when deep validation is below the target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.make_model import make_model
from registry.ingest.folder import import_folder
from registry.check.validate import validate
from registry.workspace import Workspace

TARGET_GBPS = 3.0
DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "qwen2.5-0.5b-random"


def warm(paths: list[Path]) -> None:
    """Read every file once so both contenders start from a warm page cache."""
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(16 << 20):
                pass


def time_validate(ws: Workspace) -> tuple[float, int]:
    start = time.perf_counter()
    report = validate(ws, deep=True)
    elapsed = time.perf_counter() - start
    if not report.ok:
        raise SystemExit("validation found errors: " + "; ".join(f.line() for f in report.errors))
    return elapsed, report.bytes


def time_sha256sum(paths: list[Path]) -> float:
    start = time.perf_counter()
    subprocess.run(["sha256sum", *map(str, paths)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--check", action="store_true", help=f"exit 1 below {TARGET_GBPS} GB/s")
    args = parser.parse_args(argv)
    if shutil.which("sha256sum") is None:
        parser.error("sha256sum (coreutils) is needed for the baseline")

    make_model(args.model_dir)
    root = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    try:
        ws = Workspace.open(root)
        import_folder(ws, args.model_dir, name="qwen-0.5b")
        paths = [path for _, path in ws.layout.iter_object_paths()]
        total = sum(p.stat().st_size for p in paths)
        warm(paths)
        ours, theirs = [], []
        for _ in range(args.runs):  # alternate, so drift in machine state hits both alike
            elapsed, checked = time_validate(ws)
            ours.append(elapsed)
            theirs.append(time_sha256sum(paths))
        if checked != total:
            raise SystemExit(f"validation checked {checked} bytes, the store holds {total}")
    finally:
        shutil.rmtree(root)

    ours_gbps = total / statistics.median(ours) / 1e9
    theirs_gbps = total / statistics.median(theirs) / 1e9
    verdict = "meets" if ours_gbps >= TARGET_GBPS else "BELOW"
    print(f"deep validation of {len(paths)} objects, {total / 1e9:.2f} GB, warm cache, "
          f"{os.cpu_count()} cores, median of {args.runs}:")
    print(f"  validate-registry  {ours_gbps:6.2f} GB/s  ({statistics.median(ours):.3f} s)  "
          f"{verdict} the {TARGET_GBPS:.0f} GB/s target")
    print(f"  sha256sum          {theirs_gbps:6.2f} GB/s  ({statistics.median(theirs):.3f} s)")
    print(f"  ratio              {ours_gbps / theirs_gbps:6.2f}x sha256sum")
    return 1 if args.check and ours_gbps < TARGET_GBPS else 0


if __name__ == "__main__":
    sys.exit(main())
