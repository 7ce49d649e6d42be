"""Fine-tuning and image generation for today's Qwen family (tiny models, CPU).

A VL fine-tune with its vision tower frozen shares every vision blob with its base; fused
experts (qwen3_vl_moe) train, save and dedup as the single tensors they are; the hybrid
line's MTP head is carried into every checkpoint; ``--resume`` continues a VL run exactly;
``generate --image`` gives transformers' own greedy tokens.
"""

from __future__ import annotations

import fnmatch

import pytest
import torch

from registry.ops import get_model
from registry.ingest.folder import import_folder
from registry.check.validate import validate
from store.errors import UsageError
from tests.fixtures.qwen_family import auto_class, family_model, tiny_image
from tests.training.runs import run_config
from training.generate import generate_text
from training.models import load_model
from training.train import train

VISION = ["model.visual.*", "visual.*"]  # in-memory and on-disk names of the tower


def vision_names(manifest) -> set[str]:
    return {n for n in manifest.tensors if any(fnmatch.fnmatchcase(n, p) for p in VISION)}


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "qwen3_vl_moe"])
def test_vl_fine_tune_with_the_vision_tower_frozen_stores_no_vision_byte_again(
        workspace, tmp_path, model_type):
    base = import_folder(workspace, family_model(model_type, tmp_path / "src"), name="base").manifest
    objects_before = {d for d, _ in workspace.layout.iter_object_paths()}
    result = train(workspace, run_config(model_name="base", freeze=["model.visual.*"], max_steps=2,
                                         save_every=1, eval_every=2))
    assert [c.step for c in result.checkpoints] == [1, 2]
    vision = vision_names(base)
    assert vision
    new_blobs = {d for d, _ in workspace.layout.iter_object_paths()} - objects_before
    for checkpoint in result.checkpoints:
        manifest = workspace.manifest(checkpoint.digest)
        assert set(manifest.tensors) == set(base.tensors)
        assert {n: manifest.tensors[n] for n in vision} == {n: base.tensors[n] for n in vision}
        assert not {manifest.tensors[n].digest for n in vision} & new_blobs
        # The language model trained: its matrices are new blobs.
        trained = set(manifest.tensors) - vision
        assert any(manifest.tensors[n].digest != base.tensors[n].digest for n in trained)
        # Still a VL model: same auto class, processor files kept.
        assert manifest.files["preprocessor_config.json"] == base.files["preprocessor_config.json"]
    _, ft = get_model(workspace, "ft")
    if model_type == "qwen3_vl_moe":  # fused experts: one tensor per layer, trained, same shape
        fused = [n for n in ft.tensors if n.endswith("mlp.experts.gate_up_proj")]
        assert fused and all(ft.tensors[n].shape == base.tensors[n].shape for n in fused)
        assert all(ft.tensors[n].digest != base.tensors[n].digest for n in fused)
    view = workspace.root / "models" / "ft"
    model = auto_class(model_type).from_pretrained(view)
    assert type(model).__name__ == type(load_model(workspace, "base", device="cpu").model).__name__
    assert validate(workspace).errors == []


def test_hybrid_fine_tune_carries_the_mtp_head_and_resumes_exactly(workspace, tmp_path):
    base = import_folder(workspace, family_model("qwen3_5", tmp_path / "src"), name="base").manifest
    mtp = {n: t for n, t in base.tensors.items() if n.startswith("mtp.")}
    assert mtp
    settings = dict(model_name="base", freeze=["model.visual.*"], max_steps=4, save_every=2, eval_every=2)
    straight = train(workspace, run_config(output_name="straight", **settings))
    train(workspace, run_config(output_name="resumed", **{**settings, "max_steps": 2}))
    resumed = train(workspace, run_config(output_name="resumed", **settings), resume=True)
    assert resumed.start_step == 2
    assert resumed.state.losses == straight.state.losses
    _, a = get_model(workspace, "straight")
    _, b = get_model(workspace, "resumed")
    assert a.tensors == b.tensors
    assert {n: a.tensors[n] for n in mtp} == mtp  # the MTP head, as the base has it


def test_generate_with_an_image_gives_transformers_own_greedy_tokens(workspace, tmp_path):
    import_folder(workspace, family_model("qwen2_vl", tmp_path / "src"), name="vl")
    image = tiny_image(tmp_path / "cat.png")
    ours = generate_text(workspace, "vl", prompt="What is in the picture?", image=image, max_new_tokens=6,
                         temperature=0, device="cpu")

    from training.generate import image_prompt

    loaded = load_model(workspace, "vl", device="cpu")
    inputs = image_prompt(workspace, loaded, "What is in the picture?", image)
    assert int((inputs["input_ids"] == loaded.model.config.image_token_id).sum()) > 1
    model = auto_class("qwen2_vl").from_pretrained(workspace.root / "models" / "vl").eval()
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    theirs = out[0, inputs["input_ids"].shape[1]:].tolist()
    eos = loaded.tokenizer.eos_token_id
    assert ours.token_ids == [t for t in theirs if t != eos][:len(ours.token_ids)]
    assert len(ours.token_ids) == 6 or ours.stopped == "eos"


def test_an_image_for_a_text_model_is_one_clear_error(workspace, tmp_path):
    import_folder(workspace, family_model("qwen3_next", tmp_path / "src"), name="text")
    with pytest.raises(UsageError, match="'text' .* is a text model and takes no image"):
        generate_text(workspace, "text", prompt="hi", image=tiny_image(tmp_path / "x.png"), device="cpu")


def test_a_file_that_is_no_image_is_one_clear_error(workspace, tmp_path):
    import_folder(workspace, family_model("qwen3_vl", tmp_path / "src"), name="vl")
    bogus = tmp_path / "notes.png"
    bogus.write_text("not a picture")
    with pytest.raises(UsageError, match="is not an image"):
        generate_text(workspace, "vl", prompt="hi", image=bogus, device="cpu")


@pytest.mark.parametrize("model_type", ["qwen3_next", "qwen3_5_moe", "qwen2_vl", "qwen3_vl"])
def test_every_member_fine_tunes_and_its_checkpoint_loads_with_the_same_auto_class(
        workspace, tmp_path, model_type):
    """(qwen2_5_vl, qwen3_vl_moe and qwen3_5 fine-tune in the tests above.)"""
    base = import_folder(workspace, family_model(model_type, tmp_path / "src"), name="base").manifest
    result = train(workspace, run_config(model_name="base", max_steps=1, save_every=1, eval_every=1))
    manifest = workspace.manifest(result.checkpoints[-1].digest)
    assert set(manifest.tensors) == set(base.tensors)  # nothing dropped (mtp.* carried)
    assert manifest.files == base.files
    model = auto_class(model_type).from_pretrained(workspace.root / "models" / "ft")
    assert type(model).__name__ == type(load_model(workspace, "base", device="cpu").model).__name__
