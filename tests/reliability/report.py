"""``make reliability``: run every reliability harness at the README's sizes and print its table.

The tests (``tests/reliability/test_*.py``) call the same harness functions and assert the
figures; this script only runs them at full size, in one go, and prints the README's
"Reliability" section as markdown. It takes several minutes on two cores.

    python -m tests.reliability.report [--only crash,concurrency,diskfull,hostile]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

PARTS = ("crash", "concurrency", "diskfull", "hostile")


def crash_rows(workdir: Path) -> list[tuple[str, int, int, int]]:
    """(scenario, trials, corrupted stores, failed re-runs)."""
    from tests.hub.server import HubServer
    from tests.reliability import crash_scenarios as s
    from tests.reliability.crash import run_random_kills, run_step_kills

    runs = [
        ("import-model, SIGKILL at a random moment",
         lambda: run_random_kills(s.import_fresh(), 200, 2024, workdir)),
        ("import-model, killed at every mutating step",
         lambda: run_step_kills(s.import_fresh(), None, workdir)),
        ("import-model next to another model, sampled steps",
         lambda: run_step_kills(s.import_shared(), 20, workdir)),
        ("delete-model --keep-view, every step", lambda: run_step_kills(s.delete(), None, workdir)),
        ("delete-model --delete-files, every step", lambda: run_step_kills(s.delete(True), None, workdir)),
        ("gc --grace 0, every step", lambda: run_step_kills(s.gc_after_delete(), None, workdir)),
        ("validate-registry --fix, every step", lambda: run_step_kills(s.fix_breakages(), None, workdir)),
        ("train --resume (checkpoints), sampled steps", lambda: run_step_kills(s.train_resume(), 6, workdir)),
    ]
    rows = []
    for label, run in runs:
        figures = run()
        rows.append((label, figures["trials"], figures["corrupted"], figures["rerun_failures"]))
    with HubServer() as hub:
        os.environ.update(HF_HOME=str(workdir / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1")
        figures = run_step_kills(s.hub_import(hub), 6, workdir)
        rows.append(("import-model from the Hub, sampled steps", figures["trials"], figures["corrupted"],
                     figures["rerun_failures"]))
    return rows


def print_crash(rows) -> None:
    print("| crash scenario | trials | corrupted stores | failed re-runs |\n|---|---|---|---|")
    for label, trials, corrupted, failures in rows:
        print(f"| {label} | {trials} | {corrupted} | {failures} |")
    print(f"| **total** | **{sum(r[1] for r in rows)}** | **{sum(r[2] for r in rows)}** | "
          f"**{sum(r[3] for r in rows)}** |\n")


def print_concurrency(workdir: Path) -> None:
    from tests.reliability.concurrency import run_all

    print("| race | lock | processes / updates | failed | lost updates | reads (unparsable) | "
          "corrupted stores |\n|---|---|---|---|---|---|---|")
    for row in run_all(workdir):
        size = row.get("processes") or row.get("updates") or row.get("imports") or row.get("rounds")
        reads = f"{row['reads']} ({row['unparsable_reads']})" if "reads" in row else "-"
        print(f"| {row['race']} | {'on' if row['lock'] else 'off'} | {size} | {row.get('failed', 0)} | "
              f"{row.get('lost_updates', '-')} | {reads} | {row['corrupted']} |")
    print()


def print_diskfull(workdir: Path) -> None:
    from tests.reliability.diskfull import run_enospc_steps
    from tests.reliability.diskfull_scenarios import SCENARIOS

    print("| ENOSPC injected at every step | steps | clear errors | corrupted stores | "
          "registry changed | failed retries |\n|---|---|---|---|---|---|")
    for name in SCENARIOS:
        row = run_enospc_steps(name, None, workdir / name)
        print(f"| {name} | {row['injected']} | {row['clear_errors']} | {row['corrupted']} | "
              f"{row['registry_changed']} | {row['retry_failures']} |")
    print()


def print_hostile(workdir: Path) -> None:
    from tests.reliability.hostile import run_hostile

    figures = run_hostile(workdir=workdir)
    print("| hostile input | tried | accepted | wrote outside the store | store changed |\n"
          "|---|---|---|---|---|")
    for category, row in figures["by_category"].items():
        print(f"| {category} | {row['tried']} | {row['accepted']} | {row['wrote_outside']} | "
              f"{row['store_changed']} |")
    print(f"| **total** | **{figures['tried']}** | **{figures['accepted']}** | "
          f"**{figures['wrote_outside']}** | **{figures['store_changed']}** |\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    parts = parser.parse_args().only.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="modelstore-reliability-") as tmp:
        workdir = Path(tmp)
        for part in parts:
            started = time.perf_counter()
            if part == "crash":
                print_crash(crash_rows(workdir / "crash"))
            elif part == "concurrency":
                print_concurrency(workdir / "concurrency")
            elif part == "diskfull":
                print_diskfull(workdir / "diskfull")
            else:
                print_hostile(workdir / "hostile")
            print(f"({part}: {time.perf_counter() - started:.0f} s)\n", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
