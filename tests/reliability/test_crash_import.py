"""SIGKILL ``import-model`` of a local folder at random moments and at each mutating step."""

from __future__ import annotations

import pytest

from tests.reliability.crash import assert_crash_safe, run_random_kills, run_step_kills
from tests.reliability.crash_scenarios import import_fresh, import_shared
from tests.reliability.sizes import (IMPORT_STEP_PARTS, RANDOM_KILL_PARTS, RANDOM_KILL_SEED, RANDOM_KILLS,
                                     SHARED_IMPORT_STEPS)


def test_random_kills_of_an_import_leave_a_sound_store(tmp_path):
    figures = run_random_kills(import_fresh(), trials=10, seed=7, workdir=tmp_path)
    # Ten real mid-run kills: attempts that finished first (or wrote nothing) were re-drawn.
    assert_crash_safe(figures, trials=10, min_points=4)


def test_kills_at_sampled_steps_of_an_import(tmp_path):
    figures = run_step_kills(import_fresh(), steps=4, workdir=tmp_path)
    assert figures["steps_total"] > 100  # blobs, manifest, view, registry: every step counted
    # The sample holds the last step, which a run two steps shorter than the uninterrupted one
    # (see test_kills_at_every_step_of_an_import) has already completed: it is run again, and
    # counted as unreached (not as a trial) if it never gets there.
    assert_crash_safe(figures, trials=4, min_points=3, max_unreached=1)


@pytest.mark.slow
@pytest.mark.parametrize("part", range(RANDOM_KILL_PARTS))
def test_random_kills_of_an_import_at_full_size(tmp_path, part):
    """The README's figure (``sizes.RANDOM_KILLS`` real mid-run kills), in parts, as
    `make reliability` runs them."""
    trials = RANDOM_KILLS // RANDOM_KILL_PARTS
    figures = run_random_kills(import_fresh(), trials=trials, seed=RANDOM_KILL_SEED + part, workdir=tmp_path)
    assert_crash_safe(figures, trials=trials, min_points=trials // 4)
    total, points = figures["steps_total"], figures["kill_points"]
    # Kills landed in every phase: blobs, then manifest, view and registry (the last third).
    assert min(points) < total / 3 and max(points) > 2 * total / 3, points


@pytest.mark.slow
@pytest.mark.parametrize("part", range(IMPORT_STEP_PARTS))
def test_kills_at_every_step_of_an_import(tmp_path, part):
    """Every step, in interleaved shares (one per pytest-xdist worker)."""
    figures = run_step_kills(import_fresh(), workdir=tmp_path, share=(part, IMPORT_STEP_PARTS))
    total = figures["steps_total"]
    mine = len(range(1 + part, total + 1, IMPORT_STEP_PARTS))
    # A run may take two steps more or fewer than the uninterrupted one (a new fan-out folder,
    # made and synced, for its manifest, whose bytes hold a timestamp): then its last kills
    # find it done, are run again, and count as unreached if they never get there.
    assert_crash_safe(figures, trials=mine, min_points=mine - 2, max_unreached=2)


@pytest.mark.slow
def test_kills_at_sampled_steps_of_an_import_next_to_another_model(tmp_path):
    figures = run_step_kills(import_shared(), steps=SHARED_IMPORT_STEPS, workdir=tmp_path)
    assert_crash_safe(figures, trials=SHARED_IMPORT_STEPS, min_points=SHARED_IMPORT_STEPS)
