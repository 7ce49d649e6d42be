"""SIGKILL ``train --resume`` during its checkpoints, and ``import-model`` from the Hub.

Each trial starts torch (seconds), so steps are sampled: commit steps first (a view put in
place, the registry replaced), then steps spread over the run.
"""

from __future__ import annotations

import pytest

from tests.hub.fixtures import hub_server  # noqa: F401  (fixture)
from tests.reliability.crash import assert_crash_safe, run_step_kills
from tests.reliability.crash_scenarios import hub_import, train_resume
from tests.reliability.sizes import HUB_STEPS, TRAIN_STEPS


def test_kill_while_a_checkpoint_replaces_the_view(tmp_path):
    figures = run_step_kills(train_resume(), steps=1, workdir=tmp_path)
    assert figures["steps_total"] > 50  # two checkpoints: state, tensors, manifest, view, registry
    assert_crash_safe(figures, trials=1, min_points=1)


@pytest.mark.slow
def test_kills_at_sampled_checkpoint_steps(tmp_path):
    figures = run_step_kills(train_resume(), steps=TRAIN_STEPS, workdir=tmp_path)
    assert_crash_safe(figures, trials=TRAIN_STEPS, min_points=TRAIN_STEPS)


@pytest.mark.slow
def test_kills_at_sampled_steps_of_a_hub_import(tmp_path, hub_server):
    figures = run_step_kills(hub_import(hub_server), steps=HUB_STEPS, workdir=tmp_path)
    assert figures["steps_total"] > 100
    assert_crash_safe(figures, trials=HUB_STEPS, min_points=HUB_STEPS)
