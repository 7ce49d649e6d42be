"""The starting gun of a race: ``python concurrency_launch.py GATE ID DELAY -- MAIN_ARGS...``.

Runs ``main.py MAIN_ARGS`` exactly as ``python main.py MAIN_ARGS`` would (same code path,
output and exit status: main.py runs as ``__main__``), but only once GATE/go exists, plus
DELAY seconds (to shift one racer against another across rounds). Before
that it imports what the commands import and writes GATE/ready-ID, so the racers leave the
gate together instead of being spread out by their ~0.1 s of interpreter start-up and
imports, which on two cores would otherwise mostly serialise them.
"""

from __future__ import annotations

import importlib
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "main.py"
# What import-model, delete-model, list-models and gc import lazily (none imports torch).
PRELOAD = ("click", "registry.workspace", "registry.ingest.folder", "registry.ops", "registry.space.gc",
           "cli.render", "cli.maintenance_text", "store.gc")
GATE_TIMEOUT_S = 120.0


def main(argv: list[str]) -> None:
    gate, ident, delay, separator, *args = argv
    if separator != "--":
        sys.exit("usage: concurrency_launch.py GATE ID DELAY -- MAIN_ARGS...")
    sys.path.insert(0, str(ROOT))
    for module in PRELOAD:
        importlib.import_module(module)
    gate_dir = Path(gate)
    (gate_dir / f"ready-{ident}").touch()
    go = gate_dir / "go"
    deadline = time.monotonic() + GATE_TIMEOUT_S
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit(f"concurrency_launch: {go} never appeared")
        time.sleep(0.0005)
    time.sleep(float(delay))
    sys.argv = [str(MAIN), *args]
    runpy.run_path(str(MAIN), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
