"""The parts the concurrency harness races with: starting CLI processes together, a reader
watching the registry while they write, and the measures taken of the store afterwards.

Every racer is a real ``python main.py`` process. Single-command races go through
``concurrency_launch.py`` (all processes ready, then released at once); sequences of
commands run one process after another in a thread per worker, the threads released
together by a barrier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.invariants import ROOT, cli_args, cli_env, registry_entries, temp_debris  # noqa: F401

LAUNCHER = Path(__file__).with_name("concurrency_launch.py")
TIMEOUT_S = 300


def race_env(lock: bool) -> dict[str, str]:
    """The CLI environment, with the advisory writer lock on or off."""
    return cli_env(**({} if lock else {"MODELSTORE_NO_LOCK": "1"}))


@dataclass
class Run:
    """One finished ``python main.py`` process."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def crashed(self) -> bool:
        """Killed by a signal, or a traceback instead of main.py's one-line error."""
        return self.returncode < 0 or "Traceback" in self.stderr

    @property
    def waited(self) -> bool:
        return "waiting for another modelstore writer" in self.stderr

    @property
    def error(self) -> str:
        """The ``error: ...`` line main.py printed (empty if none)."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("error: ")]
        return lines[-1] if lines else ""

    def describe(self) -> str:
        return f"{' '.join(self.args)} -> {self.returncode}: {self.error or self.stderr.strip()[-300:]}"


def run_one(root: Path, args: list[str], env: dict[str, str]) -> Run:
    done = subprocess.run(cli_args(root, *args), env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, cwd=ROOT)
    return Run(list(args), done.returncode, done.stdout, done.stderr)


def race(root: Path, commands: list[list[str]], env: dict[str, str], gate: Path,
         delays: list[float] | None = None) -> list[Run]:
    """Start every command as its own process, wait until all are ready, release them at once
    (command i ``delays[i]`` seconds later)."""
    gate.mkdir(parents=True)
    delays = delays or [0.0] * len(commands)
    processes = [
        subprocess.Popen([sys.executable, str(LAUNCHER), str(gate), str(i), str(delay), "--",
                          "--root", str(root), *args],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        for i, (args, delay) in enumerate(zip(commands, delays))
    ]
    deadline = time.monotonic() + TIMEOUT_S
    while sum(1 for _ in gate.glob("ready-*")) < len(commands):
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            break  # a racer died before the gate: release the rest, its Run will say why
        time.sleep(0.005)
    (gate / "go").touch()
    runs = []
    for args, process in zip(commands, processes):
        out, err = process.communicate(timeout=TIMEOUT_S)
        runs.append(Run(list(args), process.returncode, out, err))
    return runs


def run_sequences(root: Path, sequences: list[list[list[str]]], env: dict[str, str]) -> list[list[Run]]:
    """Worker i runs ``sequences[i]`` one process after another; all workers start together."""
    barrier = threading.Barrier(len(sequences))
    results: list[list[Run]] = [[] for _ in sequences]

    def work(i: int) -> None:
        barrier.wait()
        for args in sequences[i]:
            results[i].append(run_one(root, args, env))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sequences))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@dataclass
class RegistryWatch:
    """Counts of what readers saw while writers ran."""

    reads: int = 0
    unparsable: int = 0  # bytes that parse_registry or json refused
    missing: int = 0  # the file was absent (it exists before the race starts, so never expected)
    list_runs: int = 0
    list_failures: int = 0  # list-models exited non-zero or printed something that is not JSON
    examples: list[str] = field(default_factory=list)


class RegistryReader:
    """Reads ``models/registry.json`` in a loop with the project's parser and plain json, and
    runs ``list-models --json`` in a second loop, until stopped."""

    def __init__(self, root: Path, env: dict[str, str], pause_s: float = 0.0005):
        self.root = root
        self.env = env
        self.pause_s = pause_s
        self.watch = RegistryWatch()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._read_loop), threading.Thread(target=self._list_loop)]

    def __enter__(self) -> RegistryReader:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _note(self, what: str) -> None:
        if len(self.watch.examples) < 5:
            self.watch.examples.append(what)

    def _read_loop(self) -> None:
        from registry.registry_file import parse_registry
        from registry.errors import RegistryError

        path = self.root / "models" / "registry.json"
        while self.watch.reads + self.watch.missing == 0 or not self._stop.is_set():
            time.sleep(self.pause_s)  # leave most of the CPU to the writers
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                self.watch.missing += 1
                self._note("registry.json missing")
                continue
            self.watch.reads += 1
            try:
                parse_registry(path, data)
                json.loads(data)
            except (RegistryError, ValueError) as e:
                self.watch.unparsable += 1
                self._note(f"unparsable: {e}")

    def _list_loop(self) -> None:
        while self.watch.list_runs == 0 or not self._stop.is_set():
            run = run_one(self.root, ["list-models", "--json"], self.env)
            self.watch.list_runs += 1
            try:
                listed = json.loads(run.stdout) if run.ok else None
            except ValueError:
                listed = None
            if not isinstance(listed, list):
                self.watch.list_failures += 1
                self._note(f"list-models: {run.describe()}")
            self._stop.wait(0.05)


# --- measures of a store after a race --------------------------------------------------------


def object_digests(root: Path) -> set[str]:
    objects = root / ".modelstore" / "objects"
    if not objects.is_dir():
        return set()
    return {fan.name + obj.name for fan in objects.iterdir() for obj in fan.iterdir()}


def unreachable_objects(root: Path) -> set[str]:
    """Objects that no registered model reaches: work done twice, or left by a failed writer."""
    from registry.space.reachable import reachable
    from registry.workspace import Workspace

    workspace = Workspace(root)
    return object_digests(root) - reachable(workspace, workspace.read_registry()).keep()


def model_state(root: Path) -> dict:
    """What a user sees, independent of when things ran: each registered name's model_id and
    version (its manifest but for created_at), and each view's links and generated files."""
    import msgspec

    from registry.workspace import Workspace
    from store.digest import digest_bytes
    from store.manifest import encode_manifest

    workspace = Workspace(root)
    registry = {}
    for name, entry in sorted(registry_entries(root).items()):
        manifest = msgspec.structs.replace(workspace.manifest(entry["manifest"]), created_at="")
        registry[name] = (entry["model_id"], digest_bytes(encode_manifest(manifest)))
    views = {}
    models = root / "models"
    for view in sorted(models.iterdir()) if models.is_dir() else []:
        if view.is_dir() and not view.is_symlink() and not view.name.startswith("."):
            views[view.name] = sorted(
                (str(p.relative_to(view)), os.readlink(p) if p.is_symlink() else "file")
                for p in view.rglob("*") if not p.is_dir() or p.is_symlink())
    return {"registry": registry, "views": views}
