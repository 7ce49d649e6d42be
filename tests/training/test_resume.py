"""--resume continues exactly: the same per-step losses and the same final weights, bit for bit,
as a run that was never interrupted (CPU, one thread, deterministic kernels)."""

from __future__ import annotations

import pytest

from registry.ops import get_model
from registry.space.gc import collect_garbage
from training.errors import ResumeError
from tests.training.runs import FREEZE_75, SCRATCH_MODEL, import_base, run_config
from training.train import train


def straight_and_resumed(workspace, stop: int, **settings):
    """The same run twice: straight to max_steps as "straight", and stopped after ``stop``
    steps then resumed as "resumed". Returns both results (the second one's resume)."""
    straight = train(workspace, run_config(output_name="straight", **settings))
    # A run whose max_steps is ``stop`` is exactly the first ``stop`` steps of the longer one:
    # the learning-rate schedule does not depend on max_steps, nor do the batches.
    train(workspace, run_config(output_name="resumed", **{**settings, "max_steps": stop}))
    resumed = train(workspace, run_config(output_name="resumed", **settings), resume=True)
    return straight, resumed


def assert_same_run(workspace, straight, resumed, stop: int):
    assert resumed.state.losses == straight.state.losses  # bitwise: every step's loss
    # The stopped run also evaluated at its last step; every other evaluation is the same.
    assert [e for e in resumed.state.eval_losses if e[0] != stop] == \
        [e for e in straight.state.eval_losses if e[0] != stop]
    assert resumed.state.tokens == straight.state.tokens
    _, a = get_model(workspace, "straight")
    _, b = get_model(workspace, "resumed")
    assert a.tensors == b.tensors  # the same weights, blob for blob
    assert a.training.optimizer["optimizer.safetensors"] == b.training.optimizer["optimizer.safetensors"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fine_tune_resumed_matches_an_uninterrupted_run(workspace, tiny_model, dtype):
    import_base(workspace, tiny_model, dtype=dtype)
    straight, resumed = straight_and_resumed(workspace, 2, model_name="base", freeze=FREEZE_75, max_steps=6,
                                             save_every=2, eval_every=3, warmup_steps=3)
    assert resumed.start_step == 2 and [c.step for c in resumed.checkpoints] == [4, 6]
    assert_same_run(workspace, straight, resumed, 2)


def test_scratch_run_with_dropout_resumed_matches(workspace):
    """Dropout draws from the global RNG: its state is saved and restored too."""
    model = {**SCRATCH_MODEL, "dropout": 0.1}
    straight, resumed = straight_and_resumed(workspace, 3, model=model, max_steps=6, save_every=3)
    assert_same_run(workspace, straight, resumed, 3)


def test_resume_survives_gc_and_continues_a_finished_run(workspace, tiny_model):
    import_base(workspace, tiny_model)
    settings = dict(model_name="base", freeze=FREEZE_75, save_every=2)
    train(workspace, run_config(output_name="straight", max_steps=8, **settings))
    train(workspace, run_config(output_name="resumed", max_steps=4, **settings))
    collect_garbage(workspace, grace_s=0)  # older checkpoints' weights go; the registered one stays
    resumed = train(workspace, run_config(output_name="resumed", max_steps=8, **settings), resume=True)
    straight = train(workspace, run_config(output_name="straight", max_steps=8, **settings), resume=True)
    assert straight.checkpoints == [] and straight.state.step == 8  # already there: nothing to do
    assert resumed.state.losses == straight.state.losses


@pytest.mark.parametrize("change, key", [
    ({"lr": 1e-2}, "lr"),
    ({"seed": 9}, "seed"),
    ({"freeze": ["model.embed_tokens.*"]}, "freeze"),
    ({"batch_size": 8}, "batch_size"),
])
def test_resume_refuses_settings_that_change_the_trajectory(workspace, tiny_model, change, key):
    import_base(workspace, tiny_model)
    settings = dict(model_name="base", freeze=FREEZE_75)
    train(workspace, run_config(max_steps=2, **settings))
    with pytest.raises(ResumeError, match=f"^<config>: key '{key}' is .*, but the run was started with "):
        train(workspace, run_config(max_steps=4, **{**settings, **change}), resume=True)


def test_resume_refuses_other_data(workspace, tiny_model, tmp_path):
    import_base(workspace, tiny_model)
    text = tmp_path / "a.txt"
    text.write_text("Ada went to the market and bought two lemons. " * 40)
    settings = dict(model_name="base", freeze=FREEZE_75, data=str(text), eval_fraction=0.0)
    train(workspace, run_config(max_steps=2, **settings))
    text.write_text("Rosa stayed home and read a book about owls. " * 40)
    with pytest.raises(ResumeError, match="is not what the run started with"):
        train(workspace, run_config(max_steps=4, **settings), resume=True)
