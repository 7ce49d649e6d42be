"""Crash harness: SIGKILL a real ``python main.py`` command mid-write, then check the store.

Two ways to crash a command, both on a fresh copy of a scenario's prepared workspace:

- ``run_random_kills``: start the CLI, sleep a random delay drawn (seeded) from the window
  in which an uninterrupted run of the same command writes, and ``os.kill`` it with SIGKILL.
  The run logs its mutating steps (``MODELSTORE_FAULT=count``), so each attempt knows how
  far it got. Only a real mid-run kill is a trial: an attempt whose command finished before
  the signal, or that the signal stopped before its first mutating step (nothing written,
  nothing to test), is re-drawn, not counted; the figures count the attempts, the real
  kills and both kinds of re-draw.
- ``run_step_kills``: stop the command at its k-th mutating filesystem step
  (``MODELSTORE_FAULT=kill@k``, the counting shim in ``store/fs/fsops.py``), for every k of an
  uninterrupted run, or for a deterministic sample of them. A run that finished before its
  k-th step (its steps shifted: see ``test_crash_import``) is run again at the same k, up to
  ``STEP_ATTEMPTS`` times, then counted as ``unreached``, never as a trial.

After each crash the store must keep its promise (``invariants.check_store``: no validation
error, every object hashes to its name, the sources byte-identical) and no registry entry
may point at anything missing; then the same command is run again without a fault: it must
exit 0, and leave a sound store holding what an uninterrupted run leaves (the scenario's
``expect``; that check runs the library's validation in this process: ``sound``). The
figures come back as a dict (see ``Figures``) for the tests and the README, and
``assert_crash_safe`` is what every test asserts about them.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.reliability.invariants import ROOT, bad_objects, check_store, cli_args, cli_env, tree_digest

WS = "ws"  # the workspace root inside a scenario's base folder
RETIME_EVERY = 20  # random kills: trials between two timings of an uninterrupted run
MAX_ATTEMPTS_PER_TRIAL = 5  # random kills: give up (a failure) after this many attempts per trial
STEP_ATTEMPTS = 3  # step kills: runs at one k before it counts as unreached


@dataclass(frozen=True)
class Scenario:
    """One command to crash. Paths are built from ``base``, the folder ``setup`` filled:
    the workspace is always ``base/ws``; sources and configs live beside it and are shared
    by every trial (only the workspace is copied)."""

    name: str
    setup: Callable[[Path], None]  # build base/ws and whatever the command reads
    command: Callable[[Path], list[str]]  # CLI arguments after ``--root``
    # (root after the rerun, root after an uninterrupted run) -> what differs from the latter
    expect: Callable[[Path, Path], list[str]]
    rerun: Callable[[Path], list[str]] | None = None  # default: the command again
    sources: tuple[str, ...] = ()  # folders under base the command reads: must not change
    # The damage a scenario's store starts with (the --fix scenario): allowed until the rerun.
    tolerated: Callable[[str], bool] | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 120.0


@dataclass
class Figures:
    scenario: str
    mode: str  # "random" or "steps"
    trials: int = 0  # real mid-run kills, each checked: the figure the README quotes
    attempts: int = 0  # commands started, re-draws included
    killed: int = 0  # attempts the SIGKILL stopped after their first mutating step (== trials)
    redrawn_finished: int = 0  # attempts that finished before the signal (or the step): not trials
    redrawn_before_first_write: int = 0  # attempts killed before writing anything: not trials
    unreached: int = 0  # step kills whose step no run reached (the command took fewer steps)
    steps_total: int = 0  # mutating steps of an uninterrupted run
    steps_reached: list[int] = field(default_factory=list)  # per trial: mutating steps begun
    kill_points: list[int] = field(default_factory=list)  # distinct steps_reached of killed trials
    corrupted: int = 0  # stores with problems after the crash
    rerun_failures: int = 0  # reruns that failed or left an unsound / unexpected store
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0


@dataclass
class _Run:
    returncode: int
    steps: list[tuple[str, str]]  # (op, path) of every mutating step begun
    stderr: str
    wall_s: float
    first_step_s: float | None  # when its first mutating step began (timed runs only)


class _Bench:
    """A scenario's prepared template, its uninterrupted run, and fresh copies for trials."""

    def __init__(self, scenario: Scenario, workdir: Path):
        self.scenario, self.workdir = scenario, workdir
        self.base = workdir / "template"
        self.base.mkdir(parents=True)
        scenario.setup(self.base)
        (self.base / WS).mkdir(exist_ok=True)
        objects = self.base / WS / ".modelstore" / "objects"
        if objects.is_dir():
            # Every fan-out folder exists up front, so each trial takes the steps the
            # uninterrupted run took (a blob holding a timestamp, such as a manifest, could
            # otherwise need a new folder in one run and not another).
            for fan in range(256):
                (objects / f"{fan:02x}").mkdir(exist_ok=True)
        self.source_digests = [(self.base / s, tree_digest(self.base / s)) for s in scenario.sources]
        self.trial_count = 0
        self.reference = self.fresh_root("reference")
        first = self.run(self.reference, fault="count", timing=True)
        self.timings = [(first.first_step_s, first.wall_s)]  # (first step, end) of uninterrupted runs
        if first.returncode != 0:
            raise RuntimeError(f"{scenario.name}: the uninterrupted run failed: {first.stderr[-2000:]}")
        self.baseline = first.steps

    def fresh_root(self, label: str) -> Path:
        folder = self.workdir / label
        shutil.copytree(self.base / WS, folder / WS, symlinks=True)
        return folder / WS

    def env(self, fault: str | None, log: Path | None) -> dict[str, str]:
        extra = dict(self.scenario.env)
        if fault:
            extra.update(MODELSTORE_FAULT=fault, MODELSTORE_FAULT_LOG=str(log))
        return cli_env(**extra)

    def run(self, root: Path, *, fault: str | None = None, kill_after: float | None = None,
            timing: bool = False, args: list[str] | None = None) -> _Run:
        """Run the command (in its own session, so helpers it starts die with it)."""
        log = root.parent / "steps.log"
        log.unlink(missing_ok=True)
        argv = cli_args(root, *(args if args is not None else self.scenario.command(self.base)))
        started, first_step = time.perf_counter(), None
        proc = subprocess.Popen(argv, env=self.env(fault, log), cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            if timing:
                first_step = self._first_step(proc, log, started)
            if kill_after is not None:
                time.sleep(kill_after)
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _, stderr = proc.communicate(timeout=self.scenario.timeout)
            wall = time.perf_counter() - started
        finally:
            _kill_group(proc)
        steps = []
        if log.exists():
            steps = [tuple(line.split("\t")[1:3]) for line in log.read_text().splitlines()]
        return _Run(proc.returncode, steps, stderr, wall, first_step)

    def kill_window(self, runs: int) -> tuple[float, float]:
        """When to kill, from the last few uninterrupted runs (``runs`` more are timed now):
        from a little before the first mutating step to a little past the end. The median of
        the latest three follows a machine whose load changes while the trials run."""
        for _ in range(runs):
            root = self.fresh_root(f"timing-{len(self.timings)}")
            timed = self.run(root, fault="count", timing=True)
            shutil.rmtree(root.parent, ignore_errors=True)
            if timed.returncode == 0:
                self.timings.append((timed.first_step_s, timed.wall_s))
        recent = self.timings[-3:]
        first_step = statistics.median(first for first, _ in recent)
        return 0.8 * first_step, 1.05 * statistics.median(wall for _, wall in recent)

    @staticmethod
    def _first_step(proc: subprocess.Popen, log: Path, started: float) -> float:
        """Seconds until the command began its first mutating step (polls the step log)."""
        while proc.poll() is None and not log.exists():
            time.sleep(0.002)
        return time.perf_counter() - started

    def trial(self, figures: Figures, *, fault: str | None = None, kill_after: float | None = None) -> str:
        """One attempt: ``"killed"`` (a trial, checked), ``"finished"`` or ``"early"`` (to be
        re-drawn: the command finished first, or was killed before its first mutating
        step), or ``"failed"`` (the command failed by itself: a problem)."""
        self.trial_count += 1
        label = f"trial-{self.trial_count}"
        root = self.fresh_root(label)
        scenario = self.scenario
        try:
            crashed = self.run(root, fault=fault, kill_after=kill_after)
            figures.attempts += 1
            where = f"{label} ({fault or f'kill after {kill_after:.3f}s'}, {len(crashed.steps)} steps"
            where += f", last {crashed.steps[-1][0]} {crashed.steps[-1][1]})" if crashed.steps else ")"
            if crashed.returncode == 0:
                figures.redrawn_finished += 1
                return "finished"
            if crashed.returncode != -signal.SIGKILL:
                figures.rerun_failures += 1  # neither killed nor done: the command itself failed
                figures.problems.append(f"{where}: exited {crashed.returncode}: {crashed.stderr[-500:]}")
                return "failed"
            if not crashed.steps:
                figures.redrawn_before_first_write += 1
                return "early"
            figures.trials += 1
            figures.killed += 1
            figures.steps_reached.append(len(crashed.steps))
            if len(crashed.steps) not in figures.kill_points:
                figures.kill_points = sorted([*figures.kill_points, len(crashed.steps)])
            problems = check_store(root, self.source_digests) + dangling_references(root)
            if scenario.tolerated is not None:
                problems = [p for p in problems if not scenario.tolerated(p)]
            if problems:
                figures.corrupted += 1
                figures.problems += [f"{where} after the crash: {p}" for p in problems]
            args = scenario.rerun(self.base) if scenario.rerun else None
            again = self.run(root, args=args)
            if again.returncode != 0:
                figures.rerun_failures += 1
                figures.problems.append(f"{where}: the rerun exited {again.returncode}: "
                                        f"{again.stderr[-800:]}")
                return "killed"
            after = sound(root, self.source_digests) + scenario.expect(root, self.reference)
            if after:
                figures.rerun_failures += 1
                figures.problems += [f"{where} after the rerun: {p}" for p in after]
            return "killed"
        finally:
            shutil.rmtree(root.parent, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL whatever the command started (a worker process) once the command is gone."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait()


def crash_failures(figures: dict) -> list[str]:
    """Every broken promise of a crash run, as lines (empty: the run passed); what the tests
    assert and what ``make reliability`` fails on."""
    failures = list(figures["problems"])
    for key in ("corrupted", "rerun_failures"):
        if figures[key]:
            failures.append(f"{figures['scenario']}: {key} = {figures[key]}")
    if figures["killed"] != figures["trials"]:
        failures.append(f"{figures['scenario']}: {figures['trials']} trials but {figures['killed']} kills")
    return failures


def assert_crash_safe(figures: dict, *, trials: int, min_points: int, max_unreached: int = 0) -> None:
    """No store was left broken, every rerun finished the job, and the kills really landed:
    ``trials`` trials, each a SIGKILL that stopped the command after its first mutating step
    (attempts that finished first were re-drawn), at at least ``min_points`` different points
    (counted in mutating steps begun); of ``trials`` steps to kill at, at most
    ``max_unreached`` that no run reached (those are not trials)."""
    failures = crash_failures(figures)
    assert failures == [], "\n".join(failures[:20])
    assert figures["trials"] == figures["killed"], figures
    assert figures["trials"] + figures["unreached"] == trials, figures
    assert figures["unreached"] <= max_unreached, figures
    assert figures["attempts"] == (figures["trials"] + figures["redrawn_finished"]
                                   + figures["redrawn_before_first_write"])
    assert len(set(figures["kill_points"])) >= min_points, (figures["kill_points"], figures["steps_total"])


def dangling_references(root: Path) -> list[str]:
    """Registry entries whose manifest object, view, or a link of the view, is missing."""
    from tests.reliability.invariants import registry_entries

    problems = []
    try:
        entries = registry_entries(root)
    except ValueError as e:  # a half-written registry.json is itself a broken promise
        return [f"models/registry.json does not parse: {e}"]
    for name, entry in entries.items():
        digest = entry["manifest"]
        if not (root / ".modelstore" / "objects" / digest[:2] / digest[2:]).is_file():
            problems.append(f"{name}: its manifest {digest[:12]} is missing")
        view = root / entry["local_path"]
        if not view.is_dir():
            problems.append(f"{name}: its view {entry['local_path']} is missing")
            continue
        for path in sorted(view.rglob("*")):
            if path.is_symlink() and not path.exists():
                problems.append(f"{name}: {path.relative_to(root)} points at nothing ({os.readlink(path)})")
    return problems


def sound(root: Path, sources: list[tuple[Path, dict[str, str]]]) -> list[str]:
    """``check_store``'s promises, checked in this process (the library's own validation):
    after a successful rerun, where a second interpreter start per trial buys nothing."""
    from registry.check.validate import validate
    from registry.workspace import Workspace

    report = validate(Workspace.open(root))
    problems = [f"{f.code}: {f.message}" for f in report.errors]
    problems += [f"object does not hash to its name: {o}" for o in bad_objects(root)]
    problems += [f"source changed: {folder}" for folder, before in sources if tree_digest(folder) != before]
    return problems + dangling_references(root)


def _workdir(workdir: Path | None) -> tuple[Path, bool]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="crash-", dir=workdir)), False
    return Path(tempfile.mkdtemp(prefix="modelstore-crash-")), True


def run_random_kills(scenario: Scenario, trials: int, seed: int, workdir: Path | None = None) -> dict:
    """SIGKILL the command ``trials`` times, each after a random delay (``random.Random(seed)``).

    Delays are drawn from where the uninterrupted run writes: from a little before its
    first mutating step to a little past its end. An attempt that finished before the
    signal, or was killed before its first mutating step, is re-drawn (a new delay) and not
    counted, until ``trials`` real mid-run kills were checked; after
    ``MAX_ATTEMPTS_PER_TRIAL * trials`` attempts the run gives up, and says so in ``problems``.
    """
    started = time.perf_counter()
    folder, owned = _workdir(workdir)
    try:
        bench = _Bench(scenario, folder)
        figures = Figures(scenario.name, "random", steps_total=len(bench.baseline))
        rng = random.Random(seed)
        low, high = bench.kill_window(2)
        while figures.trials < trials:
            if figures.attempts >= MAX_ATTEMPTS_PER_TRIAL * trials:
                figures.problems.append(f"only {figures.trials} real mid-run kills in {figures.attempts} "
                                        f"attempts ({figures.redrawn_finished} finished first)")
                break
            if figures.attempts and figures.attempts % RETIME_EVERY == 0:
                low, high = bench.kill_window(1)
            if bench.trial(figures, fault="count", kill_after=rng.uniform(low, high)) == "failed":
                figures.trials += 1  # counted (and failed): re-drawing would hide it
    finally:
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
    figures.wall_s = round(time.perf_counter() - started, 2)
    return asdict(figures)


def run_step_kills(scenario: Scenario, steps: int | None = None, workdir: Path | None = None,
                   share: tuple[int, int] = (0, 1)) -> dict:
    """Kill the command at each of its mutating steps (``steps=None``), or at ``steps`` of them
    (see ``pick_steps``). ``share=(part, parts)``: only the picked steps k with
    ``(k - 1) % parts == part``, so one sweep can run as several tests spread over workers."""
    started = time.perf_counter()
    folder, owned = _workdir(workdir)
    try:
        bench = _Bench(scenario, folder)
        figures = Figures(scenario.name, "steps", steps_total=len(bench.baseline))
        part, parts = share
        for k in pick_steps(bench.baseline, steps):
            if (k - 1) % parts == part:
                for _ in range(STEP_ATTEMPTS):
                    outcome = bench.trial(figures, fault=f"kill@{k}")
                    if outcome != "finished":
                        break
                if outcome == "finished":
                    figures.unreached += 1
                elif outcome == "failed":
                    figures.trials += 1  # counted (and failed)
    finally:
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
    figures.wall_s = round(time.perf_counter() - started, 2)
    return asdict(figures)


def pick_steps(baseline: list[tuple[str, str]], count: int | None) -> list[int]:
    """Step numbers to kill at: all of them, or ``count`` chosen deterministically.

    Half of a sample (rounded up) are commit steps, renames into ``models/`` (a view put in
    place, the registry replaced), where the write order matters most; the rest are spread
    evenly over the whole run.
    """
    total = len(baseline)
    if count is None or count >= total:
        return list(range(1, total + 1))
    commits = [i for i, (op, path) in enumerate(baseline, 1)
               if op in ("rename", "exchange") and f"{os.sep}models{os.sep}" in path]
    chosen = set(_spread(commits, (count + 1) // 2))
    others = [i for i in range(1, total + 1) if i not in chosen]
    return sorted(chosen | set(_spread(others, count - len(chosen))))


def _spread(items: list[int], count: int) -> list[int]:
    """``count`` items evenly spaced over ``items`` (the middle one for a count of one)."""
    if count <= 0 or not items:
        return []
    if count == 1:
        return [items[len(items) // 2]]
    count = min(count, len(items))
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]
