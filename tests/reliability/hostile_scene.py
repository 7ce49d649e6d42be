"""Running one hostile input through the real CLI and judging what it did.

A *scene* is one folder holding everything a case can touch: the workspace (``ws/``, with
the tiny model ``good`` registered), the source folder it came from (``src/``), a sentinel
folder beside the workspace (``outside/``, which planted links point into), the Hugging Face
cache (``hf_home/``) and the place a payload would create its marker (``PWNED``). The CLI
runs with the workspace as its current directory, so a relative ``../x`` lands in the scene.

A case passes when the command gives exactly the expected exit code and error line (one
``error:`` line, the last, no traceback), nothing outside the store changed (sentinel, source,
HF cache, the scene's other entries, absolute targets such as ``/abs``; files compared by
bytes, mode and mtime, so a chmod or touch through a link counts), no code ran (marker), and
the store is as sound as before: byte-identical for a refusal, and no new validation error
for a command that acted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.invariants import bad_objects, check_store, cli_args, cli_env, tree_digest

MODEL = "good"
# Paths a hostile name, repo id or listing spells out: none may appear because of a case.
ABSOLUTE_TARGETS = ("/abs", "/etc/x", "/x", "/tmp/evil.safetensors", "/tmp/x", "/tmp/evil")
_HASH_LIMIT = 64 << 20  # bigger files (the sparse 200 MB one) are compared by size and mtime


@dataclass
class Scene:
    base: Path
    hub: object | None = None  # a started tests.hub.server.HubServer, for Hub cases
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ws(self) -> Path:
        return self.base / "ws"

    @property
    def src(self) -> Path:
        return self.base / "src"

    @property
    def outside(self) -> Path:
        return self.base / "outside"

    @property
    def hf_home(self) -> Path:
        return self.base / "hf_home"

    @property
    def marker(self) -> Path:
        return self.base / "PWNED"


def make_template(folder: Path, tiny: Path) -> Path:
    """``src/`` (a copy of ``tiny``) and ``ws/`` with it imported as ``good``: what scenes copy.

    Copying is much cheaper than importing (no fsync); views are relative links, so the copy
    works as is, and its manifest's origin still names the template's ``src/``, which no case
    changes (``--fix`` only reads it, to restore).
    """
    from registry.ingest.folder import import_folder
    from registry.workspace import Workspace

    shutil.copytree(tiny, folder / "src")
    import_folder(Workspace.open(folder / "ws"), folder / "src", name=MODEL)
    return folder


def make_scene(base: Path, template: Path, hub=None) -> Scene:
    """A fresh scene from ``template`` (see ``make_template``), with a filled sentinel."""
    scene = Scene(base, hub)
    base.mkdir(parents=True)
    shutil.copytree(template / "src", scene.src)
    shutil.copytree(template / "ws", scene.ws, symlinks=True)
    scene.outside.mkdir()
    (scene.outside / "keep.txt").write_text("precious: must stay byte-identical\n")
    (scene.outside / "nested").mkdir()
    (scene.outside / "nested" / "data.bin").write_bytes(hashlib.sha256(b"sentinel").digest() * 64)
    shutil.copy2(scene.src / "config.json", scene.outside / "config.json")
    scene.hf_home.mkdir()
    hub_env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "NO_PROXY": "127.0.0.1,localhost",
               "no_proxy": "127.0.0.1,localhost"} if hub is not None else {"HF_HUB_OFFLINE": "1"}
    scene.env = cli_env(HF_HOME=str(scene.hf_home), HF_HUB_CACHE=str(scene.hf_home / "hub"),
                        HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1", **hub_env)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        scene.env.pop(name, None)
    return scene


@dataclass(frozen=True)
class Case:
    category: str
    id: str
    args: Callable[[Scene], list[str]]  # the command line after ``--root WS``
    exit_code: int
    message: Callable[[Scene], str]  # in the error line (or, for exit 0, anywhere in stderr)
    prepare: Callable[[Scene], None] | None = None  # plants the hostile thing
    acts: bool = False  # the command changes the store (acting on a link itself), not refuses
    sole_line: bool = True  # the error line is all of stderr (no status lines before it)
    check: Callable[[Scene], list[str]] | None = None  # more broken promises, case-specific
    hub: bool = False
    slow: bool = False  # costs seconds (imports torch): @pytest.mark.slow in the suite
    timeout: float = 120


@dataclass
class Outcome:
    case: Case
    returncode: int
    stderr: str
    problems: list[str]
    accepted: bool  # a refusal was expected and the command went ahead, or let the input in
    wrote_outside: bool
    store_changed: bool
    traceback: bool


def snapshot(folder: Path) -> dict[str, tuple]:
    """Everything under ``folder`` without following links: kind, mode, size, mtime, bytes."""
    found: dict[str, tuple] = {}
    if not os.path.lexists(folder):
        return found
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, folder)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", st.st_mode)
            else:
                digest = None
                if st.st_size <= _HASH_LIMIT:
                    with open(path, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                found[rel] = ("file", st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return found


def _differences(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


class _Watch:
    """What must not change outside the store, taken before the command runs."""

    def __init__(self, scene: Scene):
        self.outside = {"outside": snapshot(scene.outside), "src": snapshot(scene.src),
                        "hf_home": snapshot(scene.hf_home)}
        self.entries = sorted(os.listdir(scene.base))
        self.absolute = {p for p in ABSOLUTE_TARGETS if os.path.lexists(p)}
        self.ws = tree_digest(scene.ws)

    def outside_problems(self, scene: Scene) -> list[str]:
        problems = []
        for label, before in self.outside.items():
            changed = _differences(before, snapshot(scene.base / label))
            if changed:
                problems.append(f"{label}/ changed outside the store: {changed[:5]}")
        if sorted(os.listdir(scene.base)) != self.entries:
            problems.append(f"new entries beside the workspace: {sorted(os.listdir(scene.base))}")
        created = {p for p in ABSOLUTE_TARGETS if os.path.lexists(p)} - self.absolute
        if created:
            problems.append(f"created absolute targets: {sorted(created)}")
        if scene.marker.exists():
            problems.append(f"the payload ran: {scene.marker} exists")
        return problems


def error_line_problems(case: Case, scene: Scene, returncode: int, stderr: str) -> list[str]:
    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    expected = case.message(scene)
    problems = []
    if returncode != case.exit_code:
        problems.append(f"exit code {returncode}, expected {case.exit_code}")
    if "Traceback" in stderr:
        problems.append("a traceback on stderr")
    if case.exit_code == 0:
        if errors:
            problems.append(f"an error line on success: {errors[0]!r}")
        if expected not in stderr:
            problems.append(f"stderr lacks {expected!r}")
        return problems
    if len(errors) != 1 or lines[-1] != errors[0]:
        problems.append(f"expected one error line, last on stderr; got {lines[-3:]!r}")
    elif expected not in errors[0]:
        problems.append(f"the error line lacks {expected!r}: {errors[0]!r}")
    if case.sole_line and len(lines) != 1:
        problems.append(f"expected stderr to be the error line alone; got {len(lines)} lines")
    return problems


def _error_keys(scene: Scene) -> set[tuple[str, str, str]]:
    """(code, path, digest) of every validation error, and of every object not hashing to its
    name: what a planted link may already break before the command runs (validated in process)."""
    from registry.check.validate import validate
    from registry.workspace import Workspace

    report = validate(Workspace.open(scene.ws), deep=True)
    keys = {(f.code, f.path or "", f.digest or "") for f in report.errors}
    return keys | {("bad-object", name, "") for name in bad_objects(scene.ws)}


def _run_cli(case: Case, scene: Scene, args: list[str], in_process: bool) -> tuple[int, str, bool]:
    """(exit code, stderr, whether an exception escaped main.py's error mapping)."""
    if not in_process:
        result = subprocess.run(cli_args(scene.ws, *args), env=scene.env, cwd=scene.ws, capture_output=True,
                                text=True, timeout=case.timeout)
        return result.returncode, result.stderr, "Traceback" in result.stderr
    from click.testing import CliRunner

    import main

    with contextlib.chdir(scene.ws):
        result = CliRunner().invoke(main.cli, ["--root", str(scene.ws), *args], prog_name="python main.py")
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    return result.exit_code, result.stderr, escaped


def run_case(case: Case, scene: Scene, *, verify: str = "changed", in_process: bool = False) -> Outcome:
    """Plant, run ``python main.py --root WS ARGS`` in the workspace, judge.

    ``in_process`` invokes main.py's click group in this process (same parsing, library call
    and error mapping; no interpreter start-up): for the many cases that share one code path,
    which the suite also runs, by sample or when slow tests run, as real subprocesses.

    The store's soundness afterwards: for a refusal, the workspace must be byte-identical
    (the scene was built sound), and with ``verify="always"`` ``check_store`` runs as well;
    for a command that acted, ``check_store`` must be clean. Where a planted link breaks
    promises by itself (category symlinks), the command must add no validation error to those.
    """
    if case.prepare is not None:
        case.prepare(scene)
    args = case.args(scene)
    watch = _Watch(scene)
    planted = case.category == "symlinks"
    before = _error_keys(scene) if planted else set()
    returncode, stderr, escaped = _run_cli(case, scene, args, in_process)
    problems = error_line_problems(case, scene, returncode, stderr)
    if escaped:
        problems.append("an exception escaped main.py's error mapping")
    outside = watch.outside_problems(scene)
    changed = tree_digest(scene.ws) != watch.ws
    store = ["the workspace changed although the command refused"] if changed and not case.acts else []
    if planted and (changed or verify == "always"):
        store += [f"new broken promise: {' '.join(k)}" for k in sorted(_error_keys(scene) - before)]
    elif not planted and (changed or case.acts or verify == "always"):
        store += check_store(scene.ws)
    extra = case.check(scene) if case.check is not None else []
    accepted = bool(extra) or (case.exit_code != 0 and returncode == 0)
    return Outcome(case, returncode, stderr, problems + outside + store + extra, accepted,
                   bool(outside), bool(store), escaped)


# --- pytest ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_template(_tiny_cache: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scene template (import into test modules: ``from ... import hostile_template``).

    The tiny model comes from tests/conftest.py's session cache, so each worker builds it once.
    """
    from tests.fixtures.tiny import write_tiny_model

    built = _tiny_cache["built"].get(("qwen2", ()))
    if built is None:
        built = write_tiny_model(_tiny_cache["dir"] / "hostile-qwen2", "qwen2")
        _tiny_cache["built"][("qwen2", ())] = built
    return make_template(tmp_path_factory.mktemp("hostile-template"), built)


def case_params(cases: list[Case], slow_ids: set[str] | None = None, *,
                sample: set[str] | None = None) -> list:
    """One pytest param per case, id'd by the case, marked slow where it costs seconds, or
    (``sample``) unless it is one of the sample: the rest of a group run in process by default."""
    slow_ids = set(slow_ids or ()) | ({c.id for c in cases} - sample if sample is not None else set())
    return [pytest.param(case, id=case.id,
                         marks=[pytest.mark.slow] if case.slow or case.id in slow_ids else [])
            for case in cases]


def assert_case_passes(outcome: Outcome) -> None:
    """One assertion per case, with everything needed to read a failure."""
    case = outcome.case
    assert outcome.problems == [], (f"{case.category}/{case.id}: exit {outcome.returncode}, "
                                    f"stderr:\n{outcome.stderr}")
    assert not (outcome.accepted or outcome.wrote_outside or outcome.store_changed or outcome.traceback)
