"""Regression tests for the bugs the disk-full harness found, one failure each.

Most fail one chosen step of a real CLI run with ``MODELSTORE_FAULT=enospc@N`` and look
at exactly what that left; the step is found in a fault-free run's log first (a run's step
count can differ by one fan-out folder, so the failing run's own log is checked too).
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from store.fs import fsops
from store.errors import StoreIOError
from store.layout import Layout
from tests.reliability.diskfull import (ERROR_LINE, NO_SPACE, Setup, Step, error_lines, registry_replaces,
                                        temp_debris, read_steps, registry_bytes, run_command, store_problems)
from tests.reliability.diskfull_scenarios import SCENARIOS
from tests.reliability.invariants import registry_entries, run_cli


Failed = tuple[Path, subprocess.CompletedProcess, Step, bytes | None]


def fail_step(tmp_path: Path, scenario: str, choose: Callable[[list[Step]], int]) -> Failed:
    """Run the scenario's command with ENOSPC at the step ``choose`` picks from the log of
    a fault-free run; return the failed root, the result, the failed step and the registry
    from before."""
    setup: Setup = SCENARIOS[scenario].prepare(tmp_path / "base")
    for attempt in range(5):
        count = tmp_path / f"count{attempt}"
        shutil.copytree(setup.root, count, symlinks=True)
        run_command(count, setup, "count", tmp_path / f"count{attempt}.steps")
        wanted = choose(read_steps(tmp_path / f"count{attempt}.steps"))
        root = tmp_path / f"try{attempt}"
        shutil.copytree(setup.root, root, symlinks=True)
        before = registry_bytes(root)
        result = run_command(root, setup, f"enospc@{wanted}", tmp_path / f"try{attempt}.steps")
        logged = read_steps(tmp_path / f"try{attempt}.steps")
        if choose(logged) == wanted:  # this run's step ``wanted`` is the one meant
            return root, result, logged[wanted - 1], before
    raise AssertionError(f"no run of {scenario} failed the chosen step")


def the_error(result: subprocess.CompletedProcess) -> dict:
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    match = ERROR_LINE.match(lines[0])
    assert result.returncode == 1 and match and match["what"] == NO_SPACE, lines[0]
    return match.groupdict()


def first(op: str, fragment: str) -> Callable[[list[Step]], int]:
    """The first step doing ``op`` on a path that contains ``fragment`` (0: none)."""
    return lambda logged: next((n for n, o, p in logged if o == op and fragment in p), 0)


def test_write_all_releases_the_callers_map_on_a_real_enospc(tmp_path):
    """A real ENOSPC while writing a tensor from the source's mmap (/dev/full returns it):
    the error's traceback kept write_all's view into the map alive, so closing the map
    raised BufferError and import-model died with a traceback instead of the ENOSPC line."""
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(1 << 16))
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(StoreIOError) as info:
            with open(source, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                with memoryview(mapped)[8:4096] as data:
                    fsops.write_all(full, data, Path("/dev/full"))
    finally:
        os.close(full)
    assert str(info.value).startswith(f"ENOSPC: {NO_SPACE} at /dev/full; free some disk space")


def test_a_store_whose_creation_failed_leaves_no_store_behind(tmp_path):
    """ENOSPC after .modelstore/objects was made but before FORMAT was written left a
    store every later command refused ("has no FORMAT marker ... move it aside"). The store
    is now assembled beside its place and renamed in: a failure leaves nothing."""
    root, result, step, _ = fail_step(tmp_path, "import-fresh", first("create", "/tmp/FORMAT-"))
    assert "/tmp/FORMAT-" in step[2] and the_error(result)["path"] == step[2]
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".modelstore")) == []
    assert run_cli(root, "list-models").returncode == 0
    src = tmp_path / "base" / "src"
    assert run_cli(root, "import-model", str(src), "--name", "m", "-y").returncode == 0
    assert store_problems(root) == [] and list(registry_entries(root)) == ["m"]


def test_a_command_that_only_took_the_lock_leaves_a_usable_folder(tmp_path):
    """delete-model on an empty folder created .modelstore/ (for its lock) and nothing else:
    every later command then refused the folder as a damaged store."""
    root = tmp_path / "ws"
    root.mkdir()
    assert "no model named 'x'" in run_cli(root, "delete-model", "x", "-y").stderr
    assert run_cli(root, "list-models").returncode == 0


def test_the_lock_file_is_created_through_fsops(tmp_path):
    """Its creation is a mutating step like any other: counted, and a full disk there gives
    the ENOSPC line naming it (it was a bare os.open, outside the fault hook)."""
    root = tmp_path / "ws"
    Layout(root).create()  # a store without a lock file yet
    log = tmp_path / "steps"
    result = run_command(root, Setup(root, ["delete-model", "x", "-y"]), "enospc@1", log)
    assert read_steps(log)[0] == (1, "create", str(root / ".modelstore" / "lock"))
    assert the_error(result)["path"] == str(root / ".modelstore" / "lock")


def test_a_failed_registry_write_removes_its_temp_file_and_the_new_view(tmp_path):
    """The registry temp file stayed in .modelstore/tmp, and the view built for m2 stayed
    in models/, so the same import then failed: "models/m2 exists but is not registered"."""
    root, result, step, before = fail_step(tmp_path, "import-second-name", first("write", "/tmp/registry-"))
    assert "/.modelstore/tmp/registry-" in step[2] and the_error(result)["path"] == step[2]
    assert temp_debris(root) == [] and registry_bytes(root) == before
    assert sorted(p.name for p in (root / "models").iterdir()) == ["m", "registry.json", "registry.json.prev"]


def test_a_failed_previous_generation_rename_removes_its_link(tmp_path):
    root, result, step, before = fail_step(tmp_path, "import-beside", first("rename", "/registry.json.prev"))
    assert the_error(result)["path"] == step[2]
    assert temp_debris(root) == [] and registry_bytes(root) == before


def test_a_failed_overwrite_puts_the_old_view_back(tmp_path):
    root, result, step, before = fail_step(tmp_path, "import-overwrite", first("create", "/tmp/registry-"))
    assert "/.modelstore/tmp/registry-" in step[2]
    the_error(result)
    metadata = json.loads((root / "models" / "m" / "metadata.json").read_text())
    assert registry_bytes(root) == before and metadata["manifest"] == registry_entries(root)["m"]["manifest"]
    assert store_problems(root) == []


def test_after_the_commit_the_error_says_the_change_was_made(tmp_path):
    """The registry was replaced, then syncing its folder failed: the line said "nothing was
    registered" while m was registered."""
    root, result, step, _ = fail_step(tmp_path, "import-fresh", lambda logged: registry_replaces(logged)[-1] + 1)
    error = the_error(result)
    assert step[1:] == ("fsync", str(root / "models")) and error["path"] == step[2]
    assert error["hint"].startswith("the change itself was made and stays")
    assert list(registry_entries(root)) == ["m"] and store_problems(root) == []


def test_delete_model_says_the_model_is_deleted_when_its_view_removal_fails(tmp_path):
    root, result, step, _ = fail_step(tmp_path, "delete-model", first("rename", "/models/.deleted-m-"))
    error = the_error(result)
    assert "/models/.deleted-m-" in step[2]
    assert error["hint"].startswith("'m' is deleted, but removing its view models/m/ failed")
    assert list(registry_entries(root)) == ["other"] and store_problems(root) == []
