"""The Qwen adapter against stock transformers, on a tiny random model of every type.

The reference is always transformers itself: ``from_pretrained`` of the original folder
for loading, ``save_pretrained`` (and importing its output) for saving. Equality is exact
(``torch.equal``), not approximate: the store must not change a single bit.
"""

import json
import logging

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from adapters import get_adapter
from adapters.qwen import QwenAdapter
from registry.ops import register
from registry.ingest.folder import import_folder
from adapters.errors import ModelCheckError, UnsupportedArchitectureError
from store.errors import CorruptObjectError, ObjectMissingError
from store.manifest import Manifest
from training.models import store_model

QWEN_TYPES = ["qwen2", "qwen2_moe", "qwen3", "qwen3_moe"]
IDS = torch.tensor([[5, 17, 300, 42, 7, 509, 0, 128]])


@pytest.fixture
def hf_warnings():
    """What transformers logs at warning level (a LOAD REPORT of missing keys, ...)."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Collect(level=logging.WARNING)
    logger = hf_logging.get_logger()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("model_type", QWEN_TYPES)
def test_loads_bit_identical_to_from_pretrained(tiny_model, workspace, model_type, dtype, hf_warnings):
    src = tiny_model(model_type, dtype=dtype)
    imported = import_folder(workspace, src, name="m")
    adapter = get_adapter(model_type)
    assert isinstance(adapter, QwenAdapter)

    reference = AutoModelForCausalLM.from_pretrained(src)
    from_blobs = adapter.load_manifest(workspace.objects, imported.manifest)
    from_view = adapter.load_folder(workspace.root / "models" / "m")

    assert from_blobs.dtype == from_view.dtype == getattr(torch, dtype)  # bf16 stays bf16
    expected = logits(reference)
    assert torch.equal(logits(from_blobs), expected)
    assert torch.equal(logits(from_view), expected)
    assert [r.getMessage() for r in hf_warnings] == []
    assert not from_blobs.training  # loaded for inference


@pytest.mark.parametrize("model_type", QWEN_TYPES)
def test_saved_tensors_are_the_blobs_of_save_pretrained(tiny_model, workspace, tmp_path, model_type):
    """Saving through the adapter writes exactly what importing save_pretrained's folder
    would: the same on-disk names (one tensor per MoE expert, no tied lm_head), the same bytes."""
    adapter = get_adapter(model_type)
    model = adapter.build(_config(tiny_model, model_type), seed=7)
    model.save_pretrained(tmp_path / "saved")
    via_hf = import_folder(workspace, tmp_path / "saved", name="via-hf").manifest

    saved = adapter.save_tensors(model, workspace.objects)
    assert saved.tensors == via_hf.tensors
    assert saved.stats.written == 0 and saved.stats.reused == len(via_hf.tensors)
    files = adapter.config_files(model)
    for relpath, data in files.items():
        assert data == (tmp_path / "saved" / relpath).read_bytes(), relpath


@pytest.mark.parametrize("model_type", QWEN_TYPES)
def test_store_then_load_from_view_gives_identical_logits(workspace, tiny_model, model_type, hf_warnings):
    adapter = get_adapter(model_type)
    model = adapter.build(_config(tiny_model, model_type), seed=3)
    stored = store_model(workspace, adapter, model, files=adapter.config_files(model),
                         source="local", model_id="built")
    register(workspace, "built", stored.digest, stored.manifest)
    view = workspace.root / "models" / "built"

    expected = logits(model)
    stock = AutoModelForCausalLM.from_pretrained(view)  # the view contract: stock transformers loads it
    assert torch.equal(logits(stock), expected)
    assert torch.equal(logits(adapter.load_manifest(workspace.objects, stored.manifest)), expected)
    assert [r.getMessage() for r in hf_warnings] == []


def _config(tiny_model, model_type: str) -> dict:
    return json.loads((tiny_model(model_type, name=f"cfg-{model_type}") / "config.json").read_text())


def test_frozen_tensors_are_neither_hashed_nor_written(tiny_model, workspace, monkeypatch):
    src = tiny_model("qwen2")
    base = import_folder(workspace, src, name="base").manifest
    adapter = get_adapter("qwen2")
    model = adapter.load_manifest(workspace.objects, base)
    changed = "model.layers.1.self_attn.q_proj.weight"
    with torch.no_grad():
        model.get_parameter(changed).add_(1.0)

    hashed = []
    original_put = workspace.objects.put_tensor
    monkeypatch.setattr(workspace.objects, "put_tensor",
                        lambda name, *a: hashed.append(name) or original_put(name, *a))
    saved = adapter.save_tensors(model, workspace.objects, skip=lambda name: name != changed,
                                 known=base.tensors)

    assert hashed == [changed]
    assert saved.stats.written == 1 and saved.stats.skipped == len(base.tensors) - 1
    assert saved.tensors[changed] != base.tensors[changed]
    assert {k: v for k, v in saved.tensors.items() if k != changed} == {
        k: v for k, v in base.tensors.items() if k != changed}


def test_skip_without_a_matching_known_entry_still_saves(tiny_model, workspace):
    """A frozen tensor the parent does not have (or has in another dtype) is hashed and stored."""
    base = import_folder(workspace, tiny_model("qwen2"), name="base").manifest
    adapter = get_adapter("qwen2")
    model = adapter.load_manifest(workspace.objects, base, dtype=torch.bfloat16)
    saved = adapter.save_tensors(model, workspace.objects, skip=lambda name: True, known=base.tensors)
    assert saved.stats.skipped == 0 and saved.stats.written == len(base.tensors)
    assert {t.dtype for t in saved.tensors.values()} == {"BF16"}


@pytest.mark.parametrize("model_type", ["qwen2_moe", "qwen3_moe"])
def test_moe_layout_maps_fused_experts_to_per_expert_tensors(tiny_model, workspace, model_type):
    base = import_folder(workspace, tiny_model(model_type), name="moe").manifest
    adapter = get_adapter(model_type)
    model = adapter.load_manifest(workspace.objects, base)
    layout = adapter.tensor_layout(model)
    groups = {g.params: g.tensors for g in layout.groups}

    fused = ("model.layers.0.mlp.experts.gate_up_proj",)
    assert sorted(groups[fused]) == sorted(
        f"model.layers.0.mlp.experts.{e}.{p}.weight" for e in range(4) for p in ("gate_proj", "up_proj"))
    assert set(layout.specs) == set(base.tensors)

    frozen = adapter.params_matching(model, ["model.layers.0.mlp.experts.*"])
    assert frozen == {"model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj"}
    # One expert of a fused tensor cannot be frozen alone: the pattern selects nothing.
    assert adapter.params_matching(model, ["model.layers.0.mlp.experts.1.*"]) == set()

    with torch.no_grad():
        model.get_parameter("model.layers.1.mlp.experts.down_proj").mul_(2.0)
    saved = adapter.save_tensors(model, workspace.objects, skip=frozen, known=base.tensors)
    assert saved.stats.skipped == 12  # 4 experts x (gate, up, down) of layer 0
    assert saved.stats.written == 4  # layer 1's down_proj, one blob per expert
    changed = {n for n in base.tensors if saved.tensors[n] != base.tensors[n]}
    assert changed == {f"model.layers.1.mlp.experts.{e}.down_proj.weight" for e in range(4)}


def test_params_matching_dense(tiny_model, workspace):
    base = import_folder(workspace, tiny_model("qwen2"), name="m").manifest
    adapter = get_adapter("qwen2")
    model = adapter.load_manifest(workspace.objects, base)
    selected = adapter.params_matching(model, ["model.embed_tokens.*", "model.layers.[0].*"])
    assert "model.embed_tokens.weight" in selected
    assert {n for n in selected if n.startswith("model.layers.")} == {
        n for n in base.tensors if n.startswith("model.layers.0.")}


def test_mapped_weights_are_copy_on_write(tiny_model, workspace):
    """Training a loaded model writes private pages, never the shared, immutable blob."""
    base = import_folder(workspace, tiny_model("qwen2"), name="m").manifest
    model = get_adapter("qwen2").load_manifest(workspace.objects, base)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    for entry in base.tensors.values():
        assert workspace.objects.rehash(entry.digest) == entry.digest


def test_a_blob_of_another_tensor_is_refused(tiny_model, workspace):
    base = import_folder(workspace, tiny_model("qwen2"), name="m").manifest
    tensors = dict(base.tensors)
    name = "model.layers.0.self_attn.k_proj.weight"
    tensors[name] = tensors["model.layers.0.self_attn.v_proj.weight"]  # same dtype and shape, other name
    with pytest.raises(CorruptObjectError, match=name.replace(".", r"\.")):
        get_adapter("qwen2").load_manifest(workspace.objects, _with(base, tensors=tensors))


def test_a_missing_blob_is_reported(tiny_model, workspace):
    base = import_folder(workspace, tiny_model("qwen2"), name="m").manifest
    entry = base.tensors["model.norm.weight"]
    workspace.objects.path(entry.digest).unlink()
    with pytest.raises(ObjectMissingError, match=entry.digest):
        get_adapter("qwen2").load_manifest(workspace.objects, base)


def test_a_missing_tensor_is_an_error_not_a_random_init(tiny_model, workspace):
    base = import_folder(workspace, tiny_model("qwen2"), name="m").manifest
    tensors = {k: v for k, v in base.tensors.items() if k != "model.layers.1.mlp.up_proj.weight"}
    with pytest.raises(ModelCheckError, match=r"missing model\.layers\.1\.mlp\.up_proj\.weight"):
        get_adapter("qwen2").load_manifest(workspace.objects, _with(base, tensors=tensors))


def test_dtype_is_converted_only_when_asked(tiny_model, workspace):
    base = import_folder(workspace, tiny_model("qwen3", dtype="bfloat16"), name="m").manifest
    adapter = get_adapter("qwen3")
    assert adapter.load_manifest(workspace.objects, base).dtype == torch.bfloat16
    assert adapter.load_manifest(workspace.objects, base, dtype=torch.float32).dtype == torch.float32


def test_smoke_test_catches_non_finite_weights(tiny_model, workspace):
    base = import_folder(workspace, tiny_model("qwen2"), name="m").manifest
    adapter = get_adapter("qwen2")
    model = adapter.load_manifest(workspace.objects, base)
    assert adapter.smoke_test(model).shape == (1, 8, 512)
    with torch.no_grad():
        model.get_parameter("model.layers.0.mlp.down_proj.weight")[0, 0] = float("nan")
    with pytest.raises(ModelCheckError, match="non-finite"):
        adapter.smoke_test(model)


def test_cached_decoder_matches_full_recompute(tiny_model, workspace):
    from adapters.base import Decoder

    base = import_folder(workspace, tiny_model("qwen2"), name="m").manifest
    adapter = get_adapter("qwen2")
    model = adapter.load_manifest(workspace.objects, base)
    cached, full = adapter.decoder(model), Decoder(adapter, model)
    assert type(cached) is not Decoder
    with torch.inference_mode():
        steps = [IDS[:, :5]] + [IDS[:, i:i + 1] for i in range(5, 8)]
        for new in steps:
            torch.testing.assert_close(cached.step(new), full.step(new), rtol=1e-5, atol=1e-5)


def _with(manifest: Manifest, **changes) -> Manifest:
    import msgspec

    return msgspec.structs.replace(manifest, **changes)



def test_another_architecture_is_one_table_entry(workspace, tmp_path, monkeypatch):
    """The extension point: route a model_type to an adapter, and import, load and save work."""
    import adapters
    from transformers import LlamaConfig, LlamaForCausalLM

    with pytest.raises(UnsupportedArchitectureError, match="'llama'"):
        get_adapter("llama")
    from adapters.family import CAUSAL_LM, FAMILY, Member

    # One row of the family table (adapters/family.py builds ADAPTERS from it at import).
    monkeypatch.setitem(FAMILY, "llama", Member("llama", "LlamaConfig", CAUSAL_LM, None, False, (), "dense"))
    monkeypatch.setitem(adapters.ADAPTERS, "llama", "adapters.qwen:QwenAdapter")

    config = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    imported = import_folder(workspace, tmp_path / "llama", name="llama")
    adapter = get_adapter("llama")
    assert "llama" in adapter.model_types
    model = adapter.load_manifest(workspace.objects, imported.manifest)
    assert torch.equal(logits(model), logits(AutoModelForCausalLM.from_pretrained(tmp_path / "llama")))
    assert adapter.save_tensors(model, workspace.objects).tensors == imported.manifest.tensors
