"""ENOSPC at the steps of the other writers: delete-model, gc, validate-registry --fix,
train (a checkpoint saved into the store) and import-model from the (fake) Hub.

Same promises as for a local import (see ``diskfull.py``). delete-model commits when it
replaces the registry; what follows (removing the view) can fail after the commit, and
then the error must say the model is deleted, not that nothing changed. train and Hub
trials start torch, so their steps are sampled even in the slow run.
"""

from __future__ import annotations

import pytest

from tests.hub.fixtures import hub_server  # noqa: F401  (fixture)
from tests.reliability.diskfull import first_of_each_op, phase_steps, run_enospc_steps
from tests.reliability.diskfull_scenarios import TRAIN, hub_scenario
from tests.reliability.test_diskfull_import import assert_all_promises_kept


def test_delete_model_before_and_after_its_commit(tmp_path):
    figures = run_enospc_steps("delete-model", phase_steps("registry-write", "commit", "last"), tmp_path)
    assert_all_promises_kept(figures)
    assert figures["after_commit"] == 1  # the view's removal, after the registry replace


def test_gc(tmp_path):
    figures = run_enospc_steps("gc", first_of_each_op, tmp_path)
    assert_all_promises_kept(figures)
    # its private folder in tmp/, moving a doomed object there, removing it and the folder
    assert figures["ops"] == ["mkdir", "rename", "rmtree", "unlink"]


def test_validate_fix_rebuilding_a_view(tmp_path):
    figures = run_enospc_steps("fix-view", phase_steps("view", "last"), tmp_path)
    assert_all_promises_kept(figures)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["delete-model", "gc", "fix-view"])
def test_every_step(tmp_path, scenario):
    figures = run_enospc_steps(scenario, None, tmp_path)
    assert_all_promises_kept(figures)
    assert figures["injected"] == figures["steps"]


@pytest.mark.slow
def test_train_checkpoint_save(tmp_path):
    """A run from scratch whose only checkpoint is saved into the store and registered:
    fail a tensor blob of it, then the registry write; the same train command then runs
    to the end."""
    figures = run_enospc_steps(TRAIN, phase_steps("blob-write", "registry-write"), tmp_path)
    assert_all_promises_kept(figures)
    assert figures["ops"] == ["write"] and figures["steps"] > 100


@pytest.mark.slow
def test_hub_import(tmp_path, hub_server):  # noqa: F811  (fixture)
    """A tensor blob written while its weight file downloads (split as it arrives), then the
    registry write."""
    figures = run_enospc_steps(hub_scenario(hub_server), phase_steps("blob-write", "registry-write"),
                               tmp_path)
    assert_all_promises_kept(figures)
    assert figures["ops"] == ["write"]
