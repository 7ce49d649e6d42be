"""Shared benchmark plumbing: the bench model, alternating timed rounds, medians, results.

Every benchmark compares against a baseline measured in the same run, alternating the two
so that drift of the machine (page cache, other load) hits both alike, and reports medians
and their ratio. Results are appended to ``bench/out/results.jsonl`` and printed.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / "data"
OUT = REPO / "bench" / "out"
BENCH_MODEL = DATA / "qwen2.5-0.5b-random"
PROJECT_SOURCES = ("main.py", "store", "adapters", "registry", "training")


def bench_model(shards: int = 1) -> Path:
    """The Qwen2.5-0.5B-shaped bf16 folder (~1 GB, 290 tensors), generated on first use."""
    from bench.make_model import make_model

    folder = BENCH_MODEL if shards == 1 else DATA / f"qwen2.5-0.5b-random-{shards}shards"
    make_model(folder, shards=shards)
    return folder


def warm(folder: Path) -> None:
    """Read every file once so both sides start from a warm page cache."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(16 << 20):
                    pass


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(rounds: int, contenders: dict[str, Callable[[], object]],
              before_each: Callable[[], None] | None = None,
              after: dict[str, list[str | None]] | None = None) -> dict[str, list[float]]:
    """Run each contender once per round, in alternating order; return their times.

    Before each timed run the filesystem is synced (untimed), so no contender pays for
    the writeback of the data another one left dirty. ``after``, if given, receives for each
    contender the contender that ran just before each of its runs (None for the very first),
    for ``report``: on the dev VM a run's speed can depend on what the previous one freed.
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    previous = None
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            if before_each:
                before_each()
            os.sync()
            times[name].append(timed(contenders[name]))
            if after is not None:
                after.setdefault(name, []).append(previous)
            previous = name
    return times


def floor_times(rounds: int, setup: Callable[[], object], timed_part: Callable[[], object]) -> list[float]:
    """Times of ``timed_part`` alone, each after an untimed ``setup`` (on a synced filesystem).

    For floors: work any contender must also do, timed on its own in the same run (the
    writeback of the bytes a copy left dirty, the imports every process of ours pays)."""
    times = []
    for _ in range(rounds):
        os.sync()
        setup()
        times.append(timed(timed_part))
    return times


def run(*cmd: str | os.PathLike, cwd: Path | None = None) -> None:
    subprocess.run([str(c) for c in cmd], cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def compile_project() -> None:
    """Bytecode for the project's own modules, as an installed tool has it; called before the
    timed runs, since without it every run compiles them again (~30 ms on the 2-core dev
    machine, where PYTHONDONTWRITEBYTECODE is set)."""
    run(sys.executable, "-m", "compileall", "-q", *(REPO / p for p in PROJECT_SOURCES))


def main_py(*args: str | os.PathLike, root: Path) -> None:
    run(sys.executable, REPO / "main.py", "--root", root, *args)


def fresh(path: Path) -> Path:
    if path.exists():
        for sub in path.rglob("*"):
            if sub.is_file() and not sub.is_symlink():
                sub.chmod(0o644)
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def report(name: str, times: dict[str, list[float]], baseline: str, target: str,
           floors: dict[str, list[float]] | None = None, after: dict[str, list[str | None]] | None = None,
           **extra) -> dict:
    """Medians and ratios to ``baseline``; ``floors`` (from ``floor_times``) are reported the
    same way: a lower bound on what the contenders can reach on this machine, in this run.
    With ``after`` (from ``alternate``), also each contender's median by what ran before it."""
    floors = floors or {}
    if after:
        extra["median_s_after"] = {
            k: {str(prev): round(statistics.median(t for t, p in zip(times[k], after[k]) if p == prev), 3)
                for prev in dict.fromkeys(after[k])}
            for k in times if k in after}
    every = {**times, **floors}
    medians = {k: statistics.median(v) for k, v in every.items()}
    ratios = {k: medians[k] / medians[baseline] for k in medians if k != baseline}
    result = {"bench": name, "target": target, "rounds": len(times[baseline]),
              "median_s": medians, "ratio_to_" + baseline: ratios,
              "times_s": {k: [round(t, 3) for t in v] for k, v in every.items()},
              "floors": sorted(floors), **extra,
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "results.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    print(f"\n[{name}] target: {target}")
    for k, v in medians.items():
        ratio = f"  ({ratios[k]:.2f}x {baseline})" if k in ratios else ""
        label = f"floor: {k}" if k in floors else k
        print(f"  {label:<44} median {v:7.3f} s over {len(every[k])} rounds{ratio}")
    for k, v in extra.items():
        print(f"  {k}: {v}")
    return result
