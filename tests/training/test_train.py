"""train(): from scratch and fine-tuning, what checkpoints hold, and the errors of a bad setup."""

from __future__ import annotations

import pytest
import torch

from registry.ops import get_model
from registry.checkpoints import run_checkpoints
from registry.errors import ModelExistsError
from training.errors import ConfigError, ResumeError, TrainingDivergedError, TrainingInterrupted
from store.manifest import TrainingOrigin
from store.objects import ObjectStore
from tests.training.runs import FREEZE_75, SCRATCH_MODEL, import_base, run_config
from training.checkpoint import OPTIMIZER_FILE, RNG_FILE, STATE_FILE, TrainerState
from training.data import eval_batches, load_tokens
from training.loop import evaluate
from training.models import load_model, load_version
from training.optim import read_safetensors
from training.train import TrainReporter, next_token_loss, train


@pytest.fixture
def base(workspace, tiny_model):
    return import_base(workspace, tiny_model)


def frozen_names(manifest, patterns=FREEZE_75) -> set[str]:
    import fnmatch

    return {n for n in manifest.tensors if any(fnmatch.fnmatchcase(n, p) for p in patterns)}


def test_from_scratch_registers_the_custom_model_and_learns(workspace):
    config = run_config(model=SCRATCH_MODEL, max_steps=12, save_every=4, eval_every=6, output_name="tiny-lm")
    result = train(workspace, config)
    entry, manifest = get_model(workspace, "tiny-lm")
    assert entry.manifest == result.entry.manifest
    assert (entry.source, entry.fine_tuned_from, entry.architecture_type) == ("custom", None,
                                                                              "modelstore_transformer")
    assert entry.metadata["trained_at"] == manifest.created_at
    assert entry.metadata["training_status"] == "finished" and entry.metadata["training_step"] == 12
    assert [s for s, _ in result.state.eval_losses] == [0, 6, 12]
    assert result.state.eval_losses[-1][1] < result.state.eval_losses[0][1] - 0.05  # it learned something
    assert len(result.state.losses) == 12 and result.state.tokens == 12 * 4 * 32

    checkpoints = run_checkpoints(workspace, entry.manifest)
    assert [c.step for c in checkpoints] == [4, 8, 12]
    first = workspace.manifest(checkpoints[0].digest)
    assert first.parents == []  # nothing before a model trained from scratch
    assert workspace.manifest(checkpoints[1].digest).parents == [checkpoints[0].digest]
    assert manifest.parents == [checkpoints[1].digest]
    assert manifest.origin == TrainingOrigin(run="tiny-lm") and manifest.training.step == 12
    assert manifest.training.settings["config"]["model"]["n_layer"] == 2
    assert set(manifest.files) == {"config.json", "tokenizer.json", "tokenizer_config.json"}

    # The stored weights are the trained ones: the recorded eval loss comes out of them again.
    loaded = load_model(workspace, "tiny-lm", device="cpu")
    data = load_tokens(config.data, loaded.tokenizer, eval_fraction=config.eval_fraction, seq_len=32)
    held_out = eval_batches(data, batch_size=4, seq_len=32, max_batches=2)
    assert evaluate(loaded.model, next_token_loss(loaded.adapter), held_out, torch.device("cpu")) == \
        result.state.eval_loss


def test_fine_tune_writes_only_trained_tensors_and_chains_parents(workspace, base, monkeypatch):
    hashed: list[str] = []
    put_tensor = ObjectStore.put_tensor

    def spy(self, name, dtype, shape, data):  # every tensor the store hashes goes through here
        hashed.append(name)
        return put_tensor(self, name, dtype, shape, data)

    monkeypatch.setattr(ObjectStore, "put_tensor", spy)
    result = train(workspace, run_config(model_name="base", freeze=FREEZE_75, max_steps=4, save_every=2))
    frozen = frozen_names(base.manifest)
    trained = set(base.manifest.tensors) - frozen
    assert trained and len(frozen) > len(trained)
    assert sorted(hashed) == sorted(list(trained) * 2)  # two checkpoints; no frozen tensor hashed, ever
    assert [c.stats.skipped for c in result.checkpoints] == [len(frozen)] * 2

    entry, manifest = get_model(workspace, "ft")
    first = workspace.manifest(result.checkpoints[0].digest)
    assert first.parents == [base.manifest_digest] and manifest.parents == [result.checkpoints[0].digest]
    for name in frozen:
        assert manifest.tensors[name] == base.manifest.tensors[name]
    assert all(manifest.tensors[n].digest != base.manifest.tensors[n].digest for n in trained
               if not n.endswith("norm.weight"))  # RMSNorm gains start at one; all else moves
    assert manifest.files == base.manifest.files  # config and tokenizer blobs reused
    assert (entry.source, entry.fine_tuned_from) == ("finetuned", "base")
    assert entry.metadata["fine_tuned_at"] == manifest.created_at
    assert manifest.license == base.manifest.license
    assert manifest.training.settings["base"] == base.manifest_digest
    assert manifest.training.metrics["loss"] == result.state.losses[-1]

    # Optimizer state exists for the trained parameters only; the trainer state is exact.
    state = manifest.training.optimizer
    assert set(state) == {OPTIMIZER_FILE, RNG_FILE, STATE_FILE}
    tensors, metadata = read_safetensors(workspace.objects.read_bytes(state[OPTIMIZER_FILE].digest))
    assert {k.split("/", 1)[1] for k in tensors} == trained and metadata["optimizer"] == "AdamW"
    assert not any(k.startswith("master/") for k in tensors)  # float32 weights need no master copies
    from store.codec import decode

    trainer = decode(workspace.objects.read_bytes(state[STATE_FILE].digest), TrainerState)
    assert trainer.losses == result.state.losses and trainer.step == 4

    # The view loads in stock transformers and gives the logits our loader gives.
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 17, 300, 42, 7]])
    with torch.no_grad():
        stock = AutoModelForCausalLM.from_pretrained(workspace.root / "models/ft")(ids).logits
        ours = load_model(workspace, "ft", device="cpu").model(ids).logits
    assert torch.equal(stock, ours)


def test_bfloat16_base_trains_float32_masters_and_stays_bfloat16(workspace, tiny_model):
    base = import_base(workspace, tiny_model, dtype="bfloat16")
    train(workspace, run_config(model_name="base", freeze=FREEZE_75, max_steps=2))
    _, manifest = get_model(workspace, "ft")
    assert {t.dtype for t in manifest.tensors.values()} == {"BF16"}
    for name in frozen_names(base.manifest):
        assert manifest.tensors[name] == base.manifest.tensors[name]
    state = manifest.training.optimizer[OPTIMIZER_FILE]
    tensors, _ = read_safetensors(workspace.objects.read_bytes(state.digest))
    model = load_model(workspace, "ft", device="cpu").model
    masters = {k.removeprefix("master/"): t for k, t in tensors.items() if k.startswith("master/")}
    assert masters and all(t.dtype == torch.float32 for t in masters.values())
    for name, master in masters.items():  # each stored weight is its master copy, rounded
        assert torch.equal(model.get_parameter(name), master.to(torch.bfloat16))


@pytest.mark.parametrize("model_type", ["qwen2_moe", "qwen3", "qwen3_moe"])
def test_every_qwen_type_fine_tunes(workspace, tiny_model, model_type):
    from registry.ingest.folder import import_folder

    base = import_folder(workspace, tiny_model(model_type), name="base")
    freeze = ["model.embed_tokens.*", "model.layers.0.*"]
    result = train(workspace, run_config(model_name="base", freeze=freeze, max_steps=2, save_every=0,
                                         eval_every=0))
    _, manifest = get_model(workspace, "ft")
    frozen = frozen_names(base.manifest, freeze)
    assert frozen and all(manifest.tensors[n] == base.manifest.tensors[n] for n in frozen)
    assert set(manifest.tensors) == set(base.manifest.tensors)  # MoE experts back on disk one by one
    assert result.checkpoints[-1].stats.skipped == len(frozen)
    loaded = load_model(workspace, "ft", device="cpu")
    assert loaded.adapter.smoke_test(loaded.model).shape[-1] == 512


def test_fine_tune_from_a_checkpoint_reference(workspace, base):
    first = train(workspace, run_config(model_name="base", freeze=FREEZE_75, max_steps=4, save_every=2))
    second = train(workspace, run_config(model_name="ft@step-2", freeze=FREEZE_75, max_steps=2,
                                         output_name="ft-b"))
    entry, manifest = get_model(workspace, "ft-b")
    assert entry.fine_tuned_from == "ft@step-2"
    assert workspace.manifest(second.checkpoints[0].digest).parents == [first.checkpoints[0].digest]
    assert manifest.training.settings["base"] == first.checkpoints[0].digest


@pytest.mark.parametrize("settings, message", [
    ({"freeze": ["model.layers.9.*"]},
     "<config>: key 'freeze[0]': 'model.layers.9.*' matches no tensor of base"),
    ({"freeze": ["*"]}, "<config>: key 'freeze': every parameter is frozen, so there is nothing to train"),
    ({"output_name": ""}, "<config>: key 'output_name' is missing"),
    ({"seq_len": 4096}, "<config>: key 'seq_len': 4096 is longer than base's context length (1024)"),
])
def test_bad_setups_are_named_before_anything_is_stored(workspace, base, settings, message):
    before = set(workspace.layout.iter_object_paths())
    with pytest.raises(ConfigError) as info:
        train(workspace, run_config(model_name="base", **settings))
    assert str(info.value).startswith(message)
    assert set(workspace.layout.iter_object_paths()) == before
    assert list(workspace.read_registry().models) == ["base"]


def test_data_too_small_for_a_window(workspace, base, tmp_path):
    (tmp_path / "tiny.txt").write_text("Ada went home.")
    with pytest.raises(ConfigError, match=r"key 'data': \d+ tokens are too few for seq_len 32"):
        train(workspace, run_config(model_name="base", data=str(tmp_path / "tiny.txt")))


def test_a_taken_output_name_is_refused_without_resume(workspace, base):
    with pytest.raises(ModelExistsError, match="output_name 'base' is already registered; pass --resume"):
        train(workspace, run_config(model_name="base", output_name="base"))
    with pytest.raises(ResumeError, match="'base' was not saved by `train` with its optimizer state"):
        train(workspace, run_config(model_name="base", output_name="base"), resume=True)
    with pytest.raises(ResumeError, match="no model named 'nope' is registered, so there is no run to"):
        train(workspace, run_config(model_name="base", output_name="nope"), resume=True)


def test_the_callers_rng_is_left_alone(workspace, base):
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    train(workspace, run_config(model_name="base", freeze=FREEZE_75, max_steps=1))
    assert torch.equal(torch.rand(3), expected)


def test_a_checkpoint_loads_without_a_view_or_name(workspace, base):
    result = train(workspace, run_config(model_name="base", freeze=FREEZE_75, max_steps=4, save_every=2))
    loaded = load_version(workspace, result.checkpoints[0].manifest, "ft@step-2", device="cpu")
    reference = load_model(workspace, "ft@step-2", device="cpu")
    for name, param in loaded.model.named_parameters():
        assert torch.equal(param, reference.model.get_parameter(name))


class StopAt(TrainReporter):
    """Interrupts the run after a given step, as Ctrl-C would."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, state, max_steps, tokens_per_s) -> None:
        if state.step == self.step:
            raise KeyboardInterrupt


def test_ctrl_c_says_which_checkpoint_is_registered(workspace, base):
    with pytest.raises(TrainingInterrupted) as info:
        train(workspace, run_config(model_name="base", freeze=FREEZE_75, max_steps=8), reporter=StopAt(3))
    assert str(info.value) == ("training interrupted at step 3; the last checkpoint is registered "
                               "(ft@step-2); `train --resume` continues from it")
    assert info.value.exit_code == 130
    entry, manifest = get_model(workspace, "ft")
    assert manifest.training.step == 2 and entry.metadata["training_status"] == "incomplete"
    with pytest.raises(TrainingInterrupted, match="no checkpoint had been saved yet; nothing was registered"):
        train(workspace, run_config(model_name="base", freeze=FREEZE_75, output_name="other"),
              reporter=StopAt(1))
    assert "other" not in workspace.read_registry().models


def test_a_diverged_loss_stops_the_run_and_keeps_the_last_checkpoint(workspace, base, monkeypatch):
    import training.train as train_module

    real = train_module.next_token_loss

    def poisoned(adapter):
        loss, calls = real(adapter), []

        def after_three_steps(model, inputs, targets):
            calls.append(torch.is_grad_enabled())  # a training step, not an evaluation
            value = loss(model, inputs, targets)
            return value * float("nan") if sum(calls) == 3 else value

        return after_three_steps

    monkeypatch.setattr(train_module, "next_token_loss", poisoned)
    with pytest.raises(TrainingDivergedError) as info:
        train(workspace, run_config(model_name="base", freeze=FREEZE_75, max_steps=8, eval_batches=1))
    assert str(info.value).startswith("training diverged: the loss of step 3 is nan; the last good "
                                      "checkpoint stays registered (ft@step-2); lower lr")
    assert get_model(workspace, "ft")[1].training.step == 2


def test_the_name_is_only_moved_from_the_runs_own_checkpoint(workspace, base):
    from registry.ops import register

    class Hijack(TrainReporter):
        def on_checkpoint(self, saved) -> None:  # someone re-registers the name mid-run
            if saved.step == 2:
                register(workspace, "ft", base.manifest_digest, base.manifest, on_conflict="overwrite")

    with pytest.raises(ModelExistsError, match="'ft' was registered by someone else while this run trained"):
        train(workspace, run_config(model_name="base", freeze=FREEZE_75, max_steps=4), reporter=Hijack())
    assert get_model(workspace, "ft")[0].manifest == base.manifest_digest  # theirs, untouched
