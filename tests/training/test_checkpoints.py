"""Checkpoint references (NAME@step-N): listing, loading, generating, registering, and gc."""

from __future__ import annotations

import os
import time

import pytest
import torch

from registry.ops import get_model
from registry.checkpoints import parse_ref, register_checkpoint, resolve_checkpoint, run_checkpoints
from registry.space.gc import collect_garbage
from registry.info import model_info
from cli.output import model_info_doc
from cli.render import model_info_text
from registry.check.validate import validate
from registry.errors import CheckpointGoneError, CheckpointNotFoundError, ModelNotFoundError
from tests.training.runs import FREEZE_75, import_base, run_config
from training.generate import generate_text
from training.models import load_model
from training.train import train


@pytest.fixture
def run(workspace, tiny_model):
    import_base(workspace, tiny_model)
    return train(workspace, run_config(model_name="base", freeze=FREEZE_75, max_steps=6, save_every=2))


def test_parse_ref():
    assert parse_ref("my-model@step-200") == ("my-model", 200)
    assert parse_ref("my-model") is None and parse_ref("a@step-") is None and parse_ref("a@200") is None


def test_model_info_lists_the_runs_checkpoints(workspace, run):
    info = model_info(workspace, "ft")
    assert [(c.step, c.digest) for c in info.checkpoints] == [(s.step, s.digest) for s in run.checkpoints]
    assert all(c.available and c.resumable for c in info.checkpoints)
    text = model_info_text(info)
    assert "checkpoints (3, training run ft):" in text
    assert f"  ft@step-2 [{run.checkpoints[0].digest[:12]}] " in text
    assert text.splitlines()[-1].startswith("  ft@step-6 ") and text.endswith(": this version")
    assert "loss" in text and "eval loss" in text
    assert model_info_doc(info)["checkpoints"][0]["step"] == 2


def test_a_reference_loads_that_checkpoints_weights_and_generates(workspace, run):
    manifest = run.checkpoints[0].manifest
    loaded = load_model(workspace, "ft@step-2", device="cpu")
    assert loaded.manifest == manifest and loaded.entry is None
    layer = "model.layers.3.mlp.up_proj.weight"
    assert not torch.equal(loaded.model.get_parameter(layer),
                           load_model(workspace, "ft", device="cpu").model.get_parameter(layer))
    first = generate_text(workspace, "ft@step-2", prompt="Ada went", max_new_tokens=6, seed=1)
    again = generate_text(workspace, "ft@step-2", prompt="Ada went", max_new_tokens=6, seed=1)
    assert len(first.token_ids) == 6 and first.token_ids == again.token_ids


@pytest.mark.parametrize("ref, error, message", [
    ("ft@step-3", CheckpointNotFoundError,
     "no checkpoint 'ft@step-3': the run that produced 'ft' stored no checkpoint at step 3; "
     "its run has checkpoints at step 2, 4, 6"),
    ("ft@latest", CheckpointNotFoundError,
     "no checkpoint 'ft@latest': a checkpoint reference reads NAME@step-N"),
    ("base@step-0", CheckpointNotFoundError, "no checkpoint 'base@step-0': model 'base' was not produced by "
     "`train`, so it has no checkpoints"),
    ("ghost@step-2", ModelNotFoundError, "no model named 'ghost' is registered"),
])
def test_bad_references_are_named(workspace, run, ref, error, message):
    with pytest.raises(error) as info:
        load_model(workspace, ref)
    assert str(info.value).startswith(message)


def test_registering_a_checkpoint_gives_it_a_view_and_keeps_it(workspace, run):
    entry = register_checkpoint(workspace, "ft@step-2")
    assert entry.model_name == "ft-step-2" and entry.manifest == run.checkpoints[0].digest
    assert (entry.source, entry.fine_tuned_from) == ("finetuned", "base")
    assert entry.metadata["checkpoint_of"] == "ft" and entry.metadata["training_step"] == 2
    from transformers import AutoModelForCausalLM

    stock = AutoModelForCausalLM.from_pretrained(workspace.root / "models/ft-step-2")
    ours = load_model(workspace, "ft@step-2", device="cpu").model
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(stock(ids).logits, ours(ids).logits)
    age_objects(workspace)
    collect_garbage(workspace, grace_s=0)
    assert load_model(workspace, "ft@step-2").manifest == run.checkpoints[0].manifest  # pinned: kept
    with pytest.raises(CheckpointGoneError):
        load_model(workspace, "ft@step-4")  # not pinned: its trained tensors were collected
    assert validate(workspace).ok


def age_objects(workspace) -> None:
    old = time.time() - 7200
    for _, path in workspace.layout.iter_object_paths():
        os.utime(path, (old, old))


def test_after_gc_unpinned_checkpoints_are_listed_but_not_loadable(workspace, run):
    age_objects(workspace)
    collect_garbage(workspace, grace_s=3600)
    checkpoints = run_checkpoints(workspace, run.entry.manifest)
    assert [c.step for c in checkpoints] == [2, 4, 6]  # manifests are kept (lineage)
    assert [c.available for c in checkpoints] == [False, False, True]
    # Gone: its 13 trained tensors, optimizer and trainer state (its RNG state, which nothing
    # drew from, is the same blob as the registered checkpoint's, so it stays).
    with pytest.raises(CheckpointGoneError) as info:
        resolve_checkpoint(workspace, "ft@step-4")
    assert str(info.value).startswith("checkpoint 'ft@step-4' can no longer be loaded: gc removed 15 of its "
                                      "blobs (only its manifest is kept, for lineage); pin the checkpoints")
    text = model_info_text(model_info(workspace, "ft"))
    assert "ft@step-4" in text and "weights collected by gc (15 blobs gone); manifest kept" in text
    assert get_model(workspace, "ft")[0].manifest == run.entry.manifest
    assert load_model(workspace, "ft@step-6").manifest == run.checkpoints[-1].manifest
