"""SIGKILL ``import-model`` of a local folder at random moments and at each mutating step."""

from __future__ import annotations

import pytest

from tests.reliability.crash import assert_crash_safe, run_random_kills, run_step_kills
from tests.reliability.crash_scenarios import import_fresh, import_shared


def test_random_kills_of_an_import_leave_a_sound_store(tmp_path):
    figures = run_random_kills(import_fresh(), trials=20, seed=7, workdir=tmp_path)
    # How many kills land before the end depends on the machine's load; the step-wise tests
    # below are the exhaustive ones.
    assert_crash_safe(figures, trials=20, min_killed=5, min_points=4)


def test_kills_at_sampled_steps_of_an_import(tmp_path):
    figures = run_step_kills(import_fresh(), steps=4, workdir=tmp_path)
    assert figures["steps_total"] > 100  # blobs, manifest, view, registry: every step counted
    # The sample holds the last step, which a run two steps shorter than the uninterrupted one
    # (see test_kills_at_every_step_of_an_import) has already completed.
    assert_crash_safe(figures, trials=4, min_killed=3, min_points=3)


@pytest.mark.slow
def test_a_hundred_random_kills_of_an_import(tmp_path):
    """`make reliability` runs 200 (the README's figure); the suite runs half, for time."""
    figures = run_random_kills(import_fresh(), trials=100, seed=2024, workdir=tmp_path)
    assert figures["completed_before_kill"] < 75
    assert_crash_safe(figures, trials=100, min_killed=25, min_points=15)
    total, points = figures["steps_total"], figures["kill_points"]
    # Kills landed in every phase: blobs, then manifest, view and registry (the last third).
    assert min(points) < total / 3 and max(points) > 2 * total / 3, points


@pytest.mark.slow
@pytest.mark.parametrize("part", [0, 1])
def test_kills_at_every_step_of_an_import(tmp_path, part):
    """Every step, in two interleaved halves (one per pytest-xdist worker)."""
    figures = run_step_kills(import_fresh(), workdir=tmp_path, share=(part, 2))
    total = figures["steps_total"]
    mine = len(range(1 + part, total + 1, 2))
    # A run may take two steps more or fewer than the uninterrupted one (a new fan-out folder,
    # made and synced, for its manifest, whose bytes hold a timestamp): then its last kills
    # find it done.
    assert_crash_safe(figures, trials=mine, min_killed=mine - 2, min_points=mine - 2)


@pytest.mark.slow
def test_kills_at_sampled_steps_of_an_import_next_to_another_model(tmp_path):
    figures = run_step_kills(import_shared(), steps=12, workdir=tmp_path)
    assert_crash_safe(figures, trials=12, min_killed=12, min_points=12)
