"""Deep validation speed: ``python main.py validate-registry`` as a process, against two baselines.

What is measured, each as a process started from the shell's point of view (interpreter
start-up, imports and exit included on every side), alternating, warm page cache (every
object read once first), on a workspace holding the Qwen2.5-0.5B-shaped model
(``bench.make_model``: about 1 GB in 290 tensor blobs plus config and tokenizer files):

- ``validate-registry``: the CLI, deep by default: it re-hashes every object (BLAKE3, a pool
  of ``store.verify`` threads, one hash each) and checks the registry, manifests and views.
- ``b3sum-equivalent``: the same BLAKE3 of the same object files, the way ``b3sum`` hashes
  (the ``blake3`` module's ``update_mmap`` over each file, ``max_threads`` = the thread
  count validation uses), in a fresh ``python`` process; no registry, manifest or view check.
  The fair baseline: same hash, same threads, same start-up.
- ``sha256sum``: coreutils over the same files, one thread: a different, slower hash, shown
  for scale (SHA-256 is what ``sha256sum``-style checks of model folders cost).

The figure is the median over ``--runs`` of each; the target is at least 3 GB/s on 2 cores.

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
from pathlib import Path

from bench.common import REPO, alternate, compile_project, report
from bench.make_model import make_model
from registry.ingest.folder import import_folder
from registry.workspace import Workspace
from store.verify import MAX_WORKERS

TARGET_GBPS = 3.0
DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "qwen2.5-0.5b-random"
# What b3sum does per file: map it and hash it with BLAKE3's own threads.
B3SUM = """
import sys, blake3
threads = int(sys.argv[1])
for path in sys.argv[2:]:
    print(blake3.blake3(max_threads=threads).update_mmap(path).hexdigest(), path)
"""


def warm(paths: list[Path]) -> None:
    """Read every file once so every contender starts from a warm page cache."""
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(16 << 20):
                pass


def threads() -> int:
    """The number of hashing threads deep validation uses (``store.verify``)."""
    return min(MAX_WORKERS, (os.cpu_count() or 1) + 1)


def quiet(*argv: str | os.PathLike) -> None:
    subprocess.run([str(a) for a in argv], check=True, stdout=subprocess.DEVNULL, cwd=REPO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--check", action="store_true", help=f"exit 1 below {TARGET_GBPS} GB/s")
    args = parser.parse_args(argv)
    if shutil.which("sha256sum") is None:
        parser.error("sha256sum (coreutils) is needed for the baseline")

    make_model(args.model_dir)
    compile_project()
    root = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    try:
        ws = Workspace.open(root)
        import_folder(ws, args.model_dir, name="qwen-0.5b")
        paths = [path for _, path in ws.layout.iter_object_paths()]
        total = sum(p.stat().st_size for p in paths)
        warm(paths)
        n = threads()
        times = alternate(args.runs, {
            "validate-registry": lambda: quiet(sys.executable, REPO / "main.py", "--root", root,
                                               "validate-registry"),
            "b3sum-equivalent": lambda: quiet(sys.executable, "-c", B3SUM, str(n), *paths),
            "sha256sum": lambda: quiet("sha256sum", *paths),
        })
    finally:
        shutil.rmtree(root)

    medians = {k: statistics.median(v) for k, v in times.items()}
    gbps = {k: total / m / 1e9 for k, m in medians.items()}
    ours = gbps["validate-registry"]
    report("validate", times, "b3sum-equivalent", f">= {TARGET_GBPS:g} GB/s",
           gbps={k: round(v, 2) for k, v in gbps.items()}, bytes=total, objects=len(paths), threads=n)
    verdict = "meets" if ours >= TARGET_GBPS else "BELOW"
    print(f"\ndeep validation of {len(paths)} objects, {total / 1e9:.2f} GB, warm cache, "
          f"{os.cpu_count()} cores, {n} hashing threads, each a process, median of {args.runs}:")
    for name in times:
        print(f"  {name:<18} {gbps[name]:6.2f} GB/s  ({medians[name]:.3f} s)")
    print(f"  validate-registry: {verdict} the {TARGET_GBPS:.0f} GB/s target; "
          f"{ours / gbps['b3sum-equivalent']:.2f}x the b3sum-equivalent, {ours / gbps['sha256sum']:.1f}x sha256sum")
    return 1 if args.check and ours < TARGET_GBPS else 0


if __name__ == "__main__":
    sys.exit(main())
