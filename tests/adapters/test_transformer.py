"""The custom Transformer (adapters/transformer.py) and its adapter (adapters/custom.py)."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from adapters import get_adapter
from adapters.custom import MODEL_TYPE, CustomAdapter, config_dict, parse_config
from adapters.transformer import Transformer, TransformerConfig
from registry.ops import get_model, register
from registry.ingest.folder import import_folder
from adapters.errors import ModelCheckError, UnsupportedArchitectureError
from store.errors import SourceError
from training.config import parse_config as parse_run_config
from training.models import create_custom_model, store_model

SMALL = TransformerConfig(vocab_size=512, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, max_seq_len=64)


def test_forward_shapes_and_causality():
    model = Transformer(SMALL).eval()
    ids = torch.randint(0, 512, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids)
        assert logits.shape == (2, 10, 512)
        # Changing a later token must not change earlier positions' logits.
        changed = ids.clone()
        changed[:, 6] = (changed[:, 6] + 1) % 512
        other = model(changed)
    assert torch.equal(logits[:, :6], other[:, :6])
    assert not torch.equal(logits[:, 6:], other[:, 6:])


def test_weight_tying_and_parameter_names():
    tied = Transformer(SMALL)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    untied = Transformer(TransformerConfig(**{**_fields(SMALL), "tie_embeddings": False}))
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    assert untied.num_params() == tied.num_params() + 512 * 32
    names = set(dict(tied.named_parameters()))
    assert {"model.embed_tokens.weight", "model.norm.weight", "model.layers.1.self_attn.q_proj.weight",
            "model.layers.1.mlp.down_proj.weight", "model.layers.0.post_attention_layernorm.weight"} <= names
    # Grouped-query attention: 2 K/V heads of 8 channels for 4 query heads.
    assert tied.model.layers[0].self_attn.k_proj.weight.shape == (16, 32)


def test_same_seed_same_weights():
    adapter = CustomAdapter()
    first, second = (adapter.build(config_dict(SMALL), seed=5) for _ in range(2))
    other = adapter.build(config_dict(SMALL), seed=6)
    state = first.state_dict()
    assert all(torch.equal(t, second.state_dict()[k]) for k, t in state.items())
    assert not torch.equal(state["model.layers.0.mlp.up_proj.weight"],
                           other.state_dict()["model.layers.0.mlp.up_proj.weight"])


@pytest.mark.parametrize("fields, message", [
    ({"n_embd": 30, "n_head": 4}, "multiple of n_head"),
    ({"n_embd": 36, "n_head": 4}, "must be even"),
    ({"n_head": 4, "n_kv_head": 3}, "multiple of n_kv_head"),
    ({"n_layer": 0}, "n_layer must be at least 1"),
])
def test_config_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig(**fields)


def test_config_json_round_trip_and_refusals():
    shape, dtype = parse_config(config_dict(SMALL, torch.bfloat16))
    assert shape == SMALL and dtype == torch.bfloat16
    with pytest.raises(SourceError, match="n_layers"):
        parse_config({**config_dict(SMALL), "n_layers": 3})
    with pytest.raises(SourceError, match="format 2"):
        parse_config({**config_dict(SMALL), "format": 2})
    with pytest.raises(UnsupportedArchitectureError):
        parse_config({**config_dict(SMALL), "model_type": "qwen2"})


def test_round_trips_through_the_store_bit_exactly(workspace, tmp_path):
    """Build -> blobs + manifest + view -> load: every tensor and every logit identical."""
    adapter = get_adapter(MODEL_TYPE)
    assert isinstance(adapter, CustomAdapter)
    model = adapter.build(config_dict(SMALL), seed=1)
    stored = store_model(workspace, adapter, model, files=adapter.config_files(model),
                         source="custom", model_id="scratch")
    assert "lm_head.weight" not in stored.manifest.tensors  # tied: stored once
    assert stored.manifest.params == model.num_params()
    register(workspace, "scratch", stored.digest, stored.manifest)

    ids = torch.tensor([[1, 2, 3, 400, 5]])
    with torch.no_grad():
        expected = model(ids)
    for loaded in (adapter.load_manifest(workspace.objects, stored.manifest),
                   adapter.load_folder(workspace.root / "models" / "scratch")):
        assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name
        with torch.no_grad():
            assert torch.equal(loaded(ids), expected)

    # Saving the loaded model again writes nothing: every blob is already there.
    again = adapter.save_tensors(adapter.load_manifest(workspace.objects, stored.manifest), workspace.objects)
    assert again.tensors == stored.manifest.tensors and again.stats.written == 0


def test_imported_like_any_model_and_deduplicated(workspace, tmp_path):
    """An HF-style folder of a custom model imports (the table accepts its model_type) and
    shares every tensor blob with the same model saved through the adapter."""
    adapter = get_adapter(MODEL_TYPE)
    model = adapter.build(config_dict(SMALL), seed=2)
    stored = store_model(workspace, adapter, model, files=adapter.config_files(model),
                         source="custom", model_id="scratch")
    folder = tmp_path / "exported"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in adapter.memory_state(model).items()},
              folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "config.json").write_bytes(adapter.config_files(model)["config.json"])

    imported = import_folder(workspace, folder, name="copy")
    assert imported.manifest.architecture_type == MODEL_TYPE
    assert imported.manifest.tensors == stored.manifest.tensors
    # config.json and every tensor blob were already stored: only the new file's header is new
    # (kept for a byte-exact export).
    assert imported.stats.new_objects == len(imported.manifest.origin_blobs()) == 1
    copy = adapter.load_manifest(workspace.objects, get_model(workspace, "copy")[1])
    assert torch.equal(copy.model.norm.weight, model.model.norm.weight)


def test_mismatched_checkpoint_is_refused(workspace):
    adapter = get_adapter(MODEL_TYPE)
    model = adapter.build(config_dict(SMALL))
    tensors = adapter.memory_state(model)
    del tensors["model.layers.1.mlp.gate_proj.weight"]
    with pytest.raises(ModelCheckError, match=r"missing model\.layers\.1\.mlp\.gate_proj\.weight"):
        adapter.from_tensors(config_dict(SMALL), tensors)
    tensors = adapter.memory_state(model)
    tensors["model.norm.weight"] = torch.ones(33)
    with pytest.raises(ModelCheckError, match=r"wrongly shaped tensor model\.norm\.weight"):
        adapter.from_tensors(config_dict(SMALL), tensors)


def test_create_custom_model_registers_it_with_the_project_tokenizer(workspace):
    config = parse_run_config("seed = 4\n[model]\nn_layer = 2\nn_embd = 32\nvocab_size = 600\n")
    entry, stored = create_custom_model(workspace, "scratch", config)
    assert entry.source == "custom" and entry.architecture_type == MODEL_TYPE
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= set(stored.manifest.files)
    assert stored.manifest.training.step == 0

    adapter = get_adapter(MODEL_TYPE)
    view = workspace.root / entry.local_path
    tokenizer = adapter.load_tokenizer(view)
    model = adapter.load_folder(view)
    assert len(tokenizer) == model.config.vocab_size == 600
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert model.config.eos_token_id == tokenizer.eos_token_id == eot
    # Same config and seed: the same model version, digest for digest.
    _, again = create_custom_model(workspace, "scratch2", config)
    assert again.manifest.tensors == stored.manifest.tensors


def test_the_adapter_table_does_not_import_torch():
    code = ("import sys, adapters; adapters.check_supported('qwen2'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(_repo()))


def test_unsupported_architecture_lists_the_supported_ones():
    with pytest.raises(UnsupportedArchitectureError) as info:
        get_adapter("llama")
    assert str(info.value) == ("unsupported architecture 'llama'; supported: modelstore_transformer, "
                               "qwen2, qwen2_5_vl, qwen2_moe, qwen2_vl, qwen3, qwen3_5, qwen3_5_moe, "
                               "qwen3_5_moe_text, qwen3_5_text, qwen3_moe, qwen3_next, qwen3_vl, qwen3_vl_moe")


def _fields(config: TransformerConfig) -> dict:
    import msgspec

    return msgspec.structs.asdict(config)


def _repo():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]
