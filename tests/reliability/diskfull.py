"""Disk full: ENOSPC injected at every mutating step of a writing command.

A command (``import-model``, ``delete-model``, ``gc``, ...) is first run once with
``MODELSTORE_FAULT=count`` to learn its N mutating steps (every one goes through
``store/fs/fsops.py``). Then, for each step k, the same command runs on a fresh copy of the
same store with ``MODELSTORE_FAULT=enospc@k``, and the store's promises are checked:

- the command exits with the store's error code and says so in ONE line (no traceback)
  that names ENOSPC ("No space left on device") and the path of step k;
- the store is sound (``invariants.check_store``: validation errors, no object whose bytes
  do not hash to its name) and the command's sources are byte-identical;
- ``models/registry.json`` is byte-identical to before (or still absent): a failed command
  changed nothing anyone can see;
- no temp file or view debris is left behind (the error path removes what it created),
  except what a failed removal was removing (it is the removal that failed; gc sweeps it);
- the same command without the fault then succeeds, leaving what the fault-free run left.

A step after the command's commit point (the replace of ``models/registry.json``, found
in the failing run's own log) cannot leave the registry as it was: there the change must
be whole (the registry as the fault-free run left it) and the error's hint must not claim
that nothing changed; the same command then succeeds too (an import is a no-op), where
that still applies (``Scenario.rerun_after_commit``).

``run_enospc_steps`` returns the figures (for the README's reliability table); the tests
call it with sampled steps by default and every step in the slow tests.
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from store.errors import StoreIOError
from tests.reliability.invariants import (bad_objects, cli_args, cli_env, registry_entries, temp_debris,
                                          tree_digest)

# What main.py exits with for a StoreIOError (a full disk among them).
DISK_FULL_EXIT = StoreIOError.exit_code
# The one line main.py prints for it: "error: ENOSPC: No space left on device at PATH; hint"
# (import's up-front space check says "ENOSPC: 2.2 MB needed but 1.1 MB free at PATH; hint").
ERROR_LINE = re.compile(r"^error: ENOSPC: (?P<what>[^;]+?) at (?P<path>/[^;]+)(; (?P<hint>.+))?$")
NO_SPACE = "No space left on device"
COMMAND_TIMEOUT_S = 300
SHIFT_ATTEMPTS = 4
# One logged step: (number, operation, path).
Step = tuple[int, str, str]
Steps = Iterable[int] | int | Callable[[list[Step]], list[int]] | None


@dataclass
class Setup:
    """A store ready for the command under test (built once, copied for every trial)."""

    root: Path
    args: list[str]  # the command, after ``--root ROOT``
    sources: list[Path] = field(default_factory=list)  # must stay byte-identical
    env: dict[str, str] = field(default_factory=dict)


def registry_names(root: Path) -> list[str]:
    return sorted(registry_entries(root))


@dataclass(frozen=True)
class Scenario:
    """One writing command on one kind of store."""

    name: str
    prepare: Callable[[Path], Setup]  # builds the store inside the folder it is given
    # What a successful run leaves that the retry must leave too (compared with the
    # fault-free run); by default the registered names.
    outcome: Callable[[Path], object] = registry_names
    # The store is damaged before the command (a repair): after a failure, only the kinds
    # of problems it had before may remain.
    damaged: bool = False
    # After a failure past the commit point, the same command runs again and succeeds
    # (an import is then a no-op); False where it no longer applies (a delete: gone).
    rerun_after_commit: bool = True


@dataclass
class Trial:
    step: int
    op: str = ""
    path: str = ""
    after_commit: bool = False  # the step came after the registry replace
    shifted: bool = False  # this run's step was of another kind than the fault-free run's
    seen: list[tuple[str, str]] = field(default_factory=list)  # a shifted run's steps before ``step``
    problems: list[str] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)

    def fail(self, kind: str, detail: str) -> None:
        self.kinds.add(kind)
        self.problems.append(f"step {self.step} ({self.op} {self.path}): {kind}: {detail}")


def run_command(root: Path, setup: Setup, fault: str | None = None,
                log: Path | None = None) -> subprocess.CompletedProcess:
    extra = dict(setup.env)
    if fault:
        extra.update(MODELSTORE_FAULT=fault, MODELSTORE_FAULT_LOG=str(log))
    return subprocess.run(cli_args(root, *setup.args), env=cli_env(**extra), capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)


def read_steps(log: Path) -> list[Step]:
    if not log.exists():
        return []
    rows = [line.split("\t", 2) for line in log.read_text().splitlines()]
    return [(int(n), op, path) for n, op, path in rows]


def error_lines(stderr: str) -> list[str]:
    """stderr without the status lines of the steps done (indented by two spaces) and the
    warnings about the source that came before the failure (a source without a tokenizer)."""
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith("  ") and not line.startswith("warning: ")]


def registry_bytes(root: Path) -> bytes | None:
    """The registry's bytes; None when there is none, or when it is the empty registry a
    store's first model commits before its view (no entry: nothing registered)."""
    path = root / "models" / "registry.json"
    if not path.exists():
        return None
    data = path.read_bytes()
    try:
        return None if json.loads(data).get("models") == {} else data
    except ValueError:
        return data


def check_disk_full_error(trial: Trial, result: subprocess.CompletedProcess, after_commit: bool) -> None:
    """One line naming ENOSPC and the path of the failed step, the disk-full exit code; after
    the commit point, a hint that does not claim nothing changed."""
    lines = error_lines(result.stderr)
    if "Traceback" in result.stderr or len(lines) != 1:
        trial.fail("unclear error", f"exit {result.returncode}, stderr:\n{result.stderr[-2000:]}")
        return
    match = ERROR_LINE.match(lines[0])
    if result.returncode != DISK_FULL_EXIT or match is None or match["what"] != NO_SPACE:
        trial.fail("unclear error", f"exit {result.returncode}: {lines[0]}")
    elif match["path"] != trial.path:
        trial.fail("unclear error", f"names {match['path']}, not the path of the step: {lines[0]}")
    elif after_commit and "nothing was" in (match["hint"] or ""):
        trial.fail("unclear error", f"the change was committed, yet the hint denies it: {lines[0]}")


def store_problems(root: Path) -> list[str]:
    """``invariants.check_store``'s findings, with validation run in this process.

    The same library call ``validate-registry --json`` makes, minus the ~0.2 s a CLI start
    costs: a sweep over every step of every command checks the store hundreds of times.
    ``test_diskfull_import`` shows both find the same problems on a damaged store.
    """
    from registry.check.validate import validate
    from registry.workspace import Workspace
    from store.errors import ModelStoreError

    problems = []
    if (root / ".modelstore").exists() or (root / "models").exists():
        try:
            report = validate(Workspace.open(root))
            problems += [f"{f.code}: {f.message}" for f in report.findings if f.severity == "error"]
        except ModelStoreError as e:
            problems.append(f"validate-registry fails: {e}")
    return problems + [f"object does not hash to its name: {o}" for o in bad_objects(root)]


def problem_kind(problem: str) -> str:
    return problem.split(":", 1)[0]


@dataclass
class Sweep:
    """What every trial of one scenario compares against."""

    scenario: Scenario
    setup: Setup
    expected: object  # the scenario's outcome after the fault-free run
    check: Callable[[Path], list[str]]
    allowed: set[str]  # problem kinds the store had before the command (a repair)
    commits: int  # registry replaces of the fault-free run: the last one is the commit point


def step_kind(row: Step, root: Path) -> tuple[str, str]:
    """A step's operation and path with what differs between runs blanked out: the
    workspace, temp names' PID and random part, object digests."""
    path = row[2].replace(str(root), "ROOT")
    path = re.sub(r"-\d+-[0-9a-f]{8,16}(\.tmp)?", "-*", path)
    return row[1], re.sub(r"/objects/[0-9a-f]{2}(/[0-9a-f]{62})?", "/objects/*", path)


def run_trial(sweep: Sweep, step: int, trial_root: Path, meant: tuple[str, str] | None = None) -> Trial:
    """Fail step ``step`` of the command on a copy of the store, check, retry, check again.

    ``meant``: the ``step_kind`` that step had in the fault-free run; a run whose step
    ``step`` is of another kind returns at once, marked ``shifted``, to be run again."""
    setup, outcome = sweep.setup, sweep.scenario.outcome
    shutil.copytree(setup.root, trial_root, symlinks=True)
    registry_before = registry_bytes(trial_root)
    temp_before = set(temp_debris(trial_root))
    sources = [(s, tree_digest(s)) for s in setup.sources]
    log = trial_root.parent / f"{trial_root.name}.steps"
    result = run_command(trial_root, setup, f"enospc@{step}", log)
    trial = Trial(step)
    logged = read_steps(log)
    failed = [row for row in logged if row[0] == step]  # (cleanup steps may follow it)
    if not failed:
        if meant is not None and result.returncode == 0:
            # This run was a step or two shorter and finished (its manifest, whose bytes hold
            # a timestamp, found its fan-out folder made): run it again, as for a shift.
            trial.shifted = True
            trial.seen = [step_kind(row, trial_root) for row in logged]
            return trial
        trial.fail("not reached", f"the command took fewer steps; exit {result.returncode}")
        return trial
    _, trial.op, trial.path = failed[0]
    if meant is not None and step_kind(failed[0], trial_root) != meant:
        trial.shifted = True
        trial.seen = [step_kind(row, trial_root) for row in logged if row[0] <= step]
        return trial
    # From this run's own log: the steps can shift between runs (see run_enospc_steps).
    after_commit = 0 < sweep.commits <= len(registry_replaces(logged[:step - 1]))
    trial.after_commit = after_commit
    check_disk_full_error(trial, result, after_commit)
    if after_commit:  # the change is made: it must be whole
        if outcome(trial_root) != sweep.expected:
            trial.fail("registry changed",
                       f"left {outcome(trial_root)!r}, the fault-free run {sweep.expected!r}")
    elif registry_bytes(trial_root) != registry_before:
        trial.fail("registry changed", "models/registry.json differs from before the command")
    for problem in sweep.check(trial_root):
        if problem_kind(problem) not in sweep.allowed:
            trial.fail("corrupted", problem)
    for folder, before in sources:
        if tree_digest(folder) != before:
            trial.fail("source changed", str(folder))
    # A failed removal leaves what it was removing (gc's private folder, a deleted view's
    # debris): gc sweeps it. A Hub download's partial file and its record stay on purpose
    # (the next run resumes them; gc sweeps abandoned ones). Anything else left behind is a
    # cleanup the error path missed.
    from registry.hub.partial import PREFIX as PARTIAL

    left = [p for p in temp_debris(trial_root) if p not in temp_before
            and not p.startswith(f".modelstore/tmp/{PARTIAL}")
            and not (trial.op in ("rmtree", "unlink") and trial.path == str(trial_root / p))]
    if left:
        trial.fail("temp left", ", ".join(left))
    if after_commit and not sweep.scenario.rerun_after_commit:
        return trial
    retry = run_command(trial_root, setup)
    if retry.returncode != 0:
        trial.fail("retry failed", f"exit {retry.returncode}: {retry.stderr.strip()[-500:]}")
        return trial
    for problem in sweep.check(trial_root):
        trial.fail("retry failed", f"store unsound after the retry: {problem}")
    if outcome(trial_root) != sweep.expected:
        trial.fail("retry failed", f"left {outcome(trial_root)!r}, the fault-free run {sweep.expected!r}")
    return trial


def realigned(counted: list[tuple[str, str]], seen: list[tuple[str, str]], k: int) -> int | None:
    """Where the fault-free run's step ``k`` falls in a run that shifted (``seen``: its steps,
    up to the one failed): the steps of the two runs are aligned, and ``k`` moves by the
    offset of the last stretch that matched at or before it; None if nothing matched."""
    matcher = difflib.SequenceMatcher(None, counted, seen, autojunk=False)
    offset = None
    for a, b, size in matcher.get_matching_blocks():
        if size and a <= k - 1:
            offset = b - a
    return None if offset is None or k + offset < 1 else k + offset


# A trial's broken promise -> the figure that counts it.
FIGURES = {"unclear error": "unclear_errors", "corrupted": "corrupted",
           "registry changed": "registry_changed", "source changed": "source_changed",
           "temp left": "temp_left", "retry failed": "retry_failures", "not reached": "not_reached"}


def registry_replaces(steps: list[Step]) -> list[int]:
    """The steps that replaced models/registry.json. A command's last one is its commit point;
    an earlier one commits no change of its own (the empty registry a store's first model
    writes before its view, so that a crash in between leaves no view without a registry)."""
    return [n for n, op, path in steps if op == "rename" and path.endswith("/models/registry.json")]


def run_enospc_steps(scenario: Scenario | str, steps: Steps = None,
                     workdir: Path | None = None, check: Callable[[Path], list[str]] | None = None) -> dict:
    """Inject ENOSPC at each of ``steps`` (see ``pick_steps``: None is every step) and
    return the figures.

    ``steps``: the command's mutating steps; ``injected``: trials run; ``after_commit``:
    those failing a step after the registry replace; ``clear_errors``: trials whose
    failure was the one clear line naming ENOSPC and the step's path; then one count per
    promise, of the trials that broke it (``unclear_errors``, ``corrupted``,
    ``registry_changed``, ``source_changed``, ``temp_left``, ``retry_failures``,
    ``not_reached``); ``reruns``: trials run again because their steps had shifted;
    ``ops``: the kinds of step failed; ``problems``: one line per broken promise. ``check``: ``store_problems`` unless given
    (``check_store`` checks the same through the CLI, ~0.2 s slower per call).
    """
    check = check or store_problems
    if isinstance(scenario, str):
        from tests.reliability.diskfull_scenarios import SCENARIOS

        scenario = SCENARIOS[scenario]
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix=f"diskfull-{scenario.name}-")) if own else Path(workdir)
    try:
        setup = scenario.prepare(workdir / "base")
        make_fan_outs(setup.root)
        logged, counted = count_steps(setup, workdir)
        allowed = {problem_kind(p) for p in check(setup.root)} if scenario.damaged else set()
        sweep = Sweep(scenario, setup, scenario.outcome(counted), check, allowed, len(registry_replaces(logged)))
        chosen = pick_steps(logged, steps)
        kinds = [step_kind(row, counted) for row in logged]
        figures: dict = {"scenario": scenario.name, "steps": len(logged), "injected": len(chosen),
                         "after_commit": 0, "clear_errors": 0, **dict.fromkeys(FIGURES.values(), 0),
                         "reruns": 0, "ops": [], "problems": []}
        for k in chosen:
            # A run's steps can shift by two from the fault-free run's (the manifest's digest
            # holds its creation time, and so may or may not need a new fan-out folder):
            # run again until step k is the step meant, judging the last run by its own log.
            # The next run aims where the shifted one's own steps say step k went.
            target = k
            for attempt in range(SHIFT_ATTEMPTS):
                meant = step_kind(logged[k - 1], counted) if attempt < SHIFT_ATTEMPTS - 1 else None
                trial = run_trial(sweep, target, workdir / f"k{k}-{attempt}", meant)
                if not trial.shifted:
                    break
                figures["reruns"] += 1
                shutil.rmtree(workdir / f"k{k}-{attempt}", ignore_errors=True)
                target = realigned(kinds, trial.seen, k) or k
            figures["after_commit"] += trial.after_commit
            figures["ops"] = sorted(set(figures["ops"]) | {trial.op} - {""})
            if not trial.kinds & {"unclear error", "not reached"}:
                figures["clear_errors"] += 1
            for kind in trial.kinds:
                figures[FIGURES[kind]] += 1
            figures["problems"] += trial.problems
            if not trial.problems:
                shutil.rmtree(workdir / f"k{k}-{attempt}", ignore_errors=True)
        return figures
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def make_fan_outs(root: Path) -> None:
    """Every fan-out folder of an existing store, made up front (as the crash harness does):
    a blob holding a timestamp, such as a manifest, could otherwise need a new folder in one
    run and not in another, and shift every later step (more often the slower the machine)."""
    objects = root / ".modelstore" / "objects"
    if objects.is_dir():
        for fan in range(256):
            (objects / f"{fan:02x}").mkdir(exist_ok=True)


def count_steps(setup: Setup, workdir: Path) -> tuple[list[Step], Path]:
    """The command's mutating steps, from one fault-free run on a copy (and that copy)."""
    root = workdir / "count"
    shutil.copytree(setup.root, root, symlinks=True)
    log = workdir / "count.steps"
    result = run_command(root, setup, "count", log)
    if result.returncode != 0:
        raise RuntimeError(f"the fault-free run failed (exit {result.returncode}): {result.stderr[-2000:]}")
    return read_steps(log), root


# The phases of a writing command, each recognised by its first step in the fault-free log.
PHASES: dict[str, Callable[[str, str], bool]] = {
    "store": lambda op, path: "/FORMAT" in path,  # creating .modelstore/
    "download": lambda op, path: "/tmp/hub-" in path and op == "write",  # a Hub file kept whole
    "blob-write": lambda op, path: "/tmp/obj-" in path and op == "write",
    "blob-publish": lambda op, path: op == "rename" and "/objects/" in path,
    "reuse": lambda op, path: op == "utime",  # refreshing a blob the store already holds
    "view": lambda op, path: "/.view-" in path,
    "view-swap": lambda op, path: op == "exchange",  # replacing an existing view
    "registry-write": lambda op, path: "/tmp/registry-" in path and op == "write",
    "registry-prev": lambda op, path: op == "link",  # keeping the previous generation
    "commit": lambda op, path: op == "rename" and path.endswith("/models/registry.json"),
}


def phase_steps(*names: str) -> Callable[[list[Step]], list[int]]:
    """For the sampled (default) runs: the first step of each named phase (all phases if
    none are named; those the command does not have are skipped), and with "last" the
    command's last step (after the commit, for a registering command)."""

    def pick(logged: list[Step]) -> list[int]:
        chosen = {len(logged)} if "last" in names or not names else set()
        for name in [n for n in names if n != "last"] or PHASES:
            chosen.add(next((n for n, op, path in logged if PHASES[name](op, path)), 0))
        return sorted(chosen - {0})

    return pick


def first_of_each_op(logged: list[Step]) -> list[int]:
    """The first step of each kind of operation (mkdir, rename, unlink, ...) the command does."""
    first: dict[str, int] = {}
    for n, op, _ in logged:
        first.setdefault(op, n)
    return sorted(first.values())


def every_nth(parts: int, part: int) -> Callable[[list[Step]], list[int]]:
    """Every step, split in ``parts`` interleaved shares: share ``part`` (0-based). Lets a
    sweep over every step run as several tests that pytest-xdist spreads over its workers."""
    return lambda logged: list(range(1 + part, len(logged) + 1, parts))


def pick_steps(logged: list[Step], steps: Steps) -> list[int]:
    """Every step (None), ``steps`` of them spread evenly (an int; first and last included),
    those a function of the fault-free run's log picks, or those given."""
    total = len(logged)
    if callable(steps):
        steps = steps(logged)
    if steps is None:
        return list(range(1, total + 1))
    if isinstance(steps, int):
        if steps >= total:
            return list(range(1, total + 1))
        return sorted({1 + round(i * (total - 1) / max(1, steps - 1)) for i in range(steps)})
    return sorted(k for k in set(steps) if 1 <= k <= total)


def summary(figures: dict) -> str:
    keys = ("steps", "injected", "after_commit", "clear_errors", *FIGURES.values(), "reruns")
    return f"{figures['scenario']}: " + ", ".join(f"{k}={figures[k]}" for k in keys)
