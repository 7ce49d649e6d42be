"""ENOSPC at the steps of ``import-model`` (see ``diskfull.py`` for what each trial checks).

Default run: one step per phase of the import (store creation, blob write, blob publish,
view, registry write, commit, after the commit). Slow run: every step, on a fresh store,
beside another model, and under a second name.
"""

from __future__ import annotations

import shutil

import pytest

from tests.reliability.diskfull import every_nth, phase_steps, run_enospc_steps, store_problems, summary
from tests.reliability.diskfull_scenarios import cli_ok, tiny_source
from tests.reliability.invariants import check_store

BROKEN = ("unclear_errors", "corrupted", "registry_changed", "source_changed", "temp_left",
          "retry_failures", "not_reached")


def assert_all_promises_kept(figures: dict) -> None:
    print(summary(figures))  # the figures, for `pytest -rP` (the README's reliability table)
    assert figures["problems"] == [], "\n".join(figures["problems"][:20])
    assert {k: figures[k] for k in BROKEN} == dict.fromkeys(BROKEN, 0)
    assert figures["clear_errors"] == figures["injected"] > 0


def test_fresh_store_each_phase(tmp_path):
    figures = run_enospc_steps("import-fresh", phase_steps(), tmp_path)
    assert_all_promises_kept(figures)
    # store creation, blob write and publication, view, registry write, commit, last step
    assert {"mkdir", "create", "write", "rename", "fsync"} <= set(figures["ops"])
    assert figures["injected"] == 8


def test_store_holding_another_model(tmp_path):
    """Blobs are both reused and written, and the registry (one entry to keep) rewritten."""
    figures = run_enospc_steps("import-beside", phase_steps("reuse", "blob-write", "registry-prev"),
                               tmp_path)
    assert_all_promises_kept(figures)
    assert figures["ops"] == ["link", "utime", "write"]


def test_second_name(tmp_path):
    """Every blob exists: only the manifest, the view and the registry are written."""
    figures = run_enospc_steps("import-second-name", phase_steps("reuse", "view", "registry-write"),
                               tmp_path)
    assert_all_promises_kept(figures)
    assert figures["steps"] < 70 and figures["ops"] == ["mkdir", "utime", "write"]


def test_overwrite_puts_the_old_view_back(tmp_path):
    """--on-conflict overwrite swaps the new view in before the registry write; when that
    write fails, the old view must be swapped back (validation checks that it matches m's
    registered manifest, the outcome that m still comes from the old source), and the
    retry then overwrites."""
    figures = run_enospc_steps("import-overwrite", phase_steps("view-swap", "registry-write"), tmp_path)
    assert_all_promises_kept(figures)
    assert figures["ops"] == ["exchange", "write"]


def test_fast_check_finds_what_check_store_finds(tmp_path):
    """The sweeps check with ``store_problems`` (validation in-process); on a store with a
    deleted view and a truncated blob it reports the same problems as ``check_store``."""
    root = tmp_path / "ws"
    root.mkdir()
    cli_ok(root, "import-model", str(tiny_source(tmp_path / "src")), "--name", "m", "-y")
    assert store_problems(root) == check_store(root) == []
    shutil.rmtree(root / "models" / "m")
    blob = max((root / ".modelstore" / "objects").glob("*/*"), key=lambda p: p.stat().st_size)
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-4])
    found = store_problems(root)
    assert found == check_store(root)
    assert [p.split(":")[0] for p in found] == ["object-size", "view-missing",
                                              "object does not hash to its name"]


@pytest.mark.slow
@pytest.mark.parametrize("scenario,parts,part", [
    ("import-fresh", 3, 0), ("import-fresh", 3, 1), ("import-fresh", 3, 2),
    ("import-beside", 2, 0), ("import-beside", 2, 1), ("import-second-name", 1, 0),
    ("import-overwrite", 1, 0),  # every scenario of the README's table runs at full size in CI
])
def test_every_step(tmp_path, scenario, parts, part):
    figures = run_enospc_steps(scenario, every_nth(parts, part), tmp_path)
    assert_all_promises_kept(figures)
    assert figures["injected"] == len(range(1 + part, figures["steps"] + 1, parts))
