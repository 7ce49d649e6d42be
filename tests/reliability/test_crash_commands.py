"""SIGKILL ``delete-model``, ``gc`` and ``validate-registry --fix`` at their mutating steps.

Each killed command leaves a store that validates (the --fix scenario may still show the
damage it started with) and that the same command, run again, finishes.
"""

from __future__ import annotations

import pytest

from tests.reliability.crash import assert_crash_safe, run_step_kills
from tests.reliability.crash_scenarios import delete, fix_breakages, gc_after_delete

SCENARIOS = {
    "delete": lambda: delete(),
    "delete-files": lambda: delete(delete_files=True),
    "gc": gc_after_delete,
    "fix": fix_breakages,
}
# Fewest mutating steps an uninterrupted run takes: proof the scenario does real work
# (gc removes two models' blobs, --fix recovers, quarantines, restores and rebuilds).
MIN_STEPS = {"delete": 6, "delete-files": 10, "gc": 30, "fix": 40}


@pytest.mark.parametrize("name", SCENARIOS)
def test_kills_at_sampled_steps(tmp_path, name):
    figures = run_step_kills(SCENARIOS[name](), steps=3, workdir=tmp_path)
    assert figures["steps_total"] >= MIN_STEPS[name]
    assert_crash_safe(figures, trials=3, min_points=3)


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIOS)
def test_kills_at_every_step(tmp_path, name):
    figures = run_step_kills(SCENARIOS[name](), workdir=tmp_path)
    total = figures["steps_total"]
    assert total >= MIN_STEPS[name]
    assert_crash_safe(figures, trials=total, min_points=total)
