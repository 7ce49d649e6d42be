"""Tests for the tiny model builders (adapters/tiny.py) and the corpus script (data/).

The rest of the suite builds its models with these helpers, so they must load with stock
transformers, offline, and be byte-for-byte reproducible (the store names blobs by hash).
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never touch the network

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from adapters.tiny import SUPPORTED_TINY_TYPES, train_tokenizer, write_tiny_model

REPO = Path(__file__).resolve().parents[2]


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def file_tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            tensors.update({name: f.get_tensor(name) for name in f.keys()})
    return tensors


@pytest.fixture
def hf_warnings():
    """Collect what transformers logs at warning level or above (missing keys, dtype, ...)."""
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


@pytest.mark.parametrize("model_type", SUPPORTED_TINY_TYPES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loads_with_from_pretrained(tmp_path, model_type, dtype, hf_warnings):
    folder = write_tiny_model(tmp_path / "m", model_type, dtype=dtype)
    model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info
    assert [r.getMessage() for r in hf_warnings] == []
    assert model.config.model_type == model_type
    assert model.dtype == getattr(torch, dtype)  # 5.x loads with dtype="auto" by default

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.vocab_size == len(tokenizer)
    ids = tokenizer("Ada went to the park.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("model_type", SUPPORTED_TINY_TYPES)
def test_same_seed_same_bytes_other_seed_other_weights(tmp_path, model_type):
    first = write_tiny_model(tmp_path / "a", model_type, seed=3)
    again = write_tiny_model(tmp_path / "b", model_type, seed=3)
    other = write_tiny_model(tmp_path / "c", model_type, seed=4)
    assert file_bytes(first) == file_bytes(again)

    a, c = file_tensors(first), file_tensors(other)
    assert a.keys() == c.keys()
    assert not torch.equal(a["model.embed_tokens.weight"], c["model.embed_tokens.weight"])
    # Norms (ones) and biases (zeros) do not depend on the seed; every matrix does.
    matrices = [name for name, t in a.items() if t.dim() == 2]
    assert all(not torch.equal(a[name], c[name]) for name in matrices)


def test_bytes_identical_in_a_fresh_process(tmp_path):
    """Digests must not depend on the process: hash seed, RNG state, thread count."""
    here = write_tiny_model(tmp_path / "here", "qwen2_moe", dtype="bfloat16", seed=7)
    script = ("import sys; from adapters.tiny import write_tiny_model; "
              "write_tiny_model(sys.argv[1], 'qwen2_moe', dtype='bfloat16', seed=7)")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO), "RAYON_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "there")], check=True, env=env)
    assert file_bytes(here) == file_bytes(tmp_path / "there")


@pytest.mark.parametrize("model_type", ["qwen2", "qwen3_moe"])
def test_sharded_index_covers_every_tensor(tmp_path, model_type):
    single = write_tiny_model(tmp_path / "single", model_type, seed=1)
    sharded = write_tiny_model(tmp_path / "sharded", model_type, seed=1, shards=3)

    names = sorted(p.name for p in sharded.glob("*.safetensors"))
    assert names == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert not (sharded / "model.safetensors").exists()
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    in_files = {}
    for name in names:
        with safe_open(sharded / name, "pt") as f:
            assert f.metadata() == {"format": "pt"}
            in_files.update(dict.fromkeys(f.keys(), name))
    assert index["weight_map"] == in_files
    assert set(index["weight_map"].values()) == set(names)

    tensors, reference = file_tensors(sharded), file_tensors(single)
    assert tensors.keys() == reference.keys()
    assert all(torch.equal(tensors[k], reference[k]) for k in tensors)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())

    model, info = AutoModelForCausalLM.from_pretrained(sharded, output_loading_info=True)
    assert not any(info.values()), info


@pytest.mark.parametrize("model_type", SUPPORTED_TINY_TYPES)
def test_tensor_layout_on_disk(tmp_path, model_type):
    """Hub layout: tied lm_head not stored; MoE experts stored one tensor per expert."""
    tied = file_tensors(write_tiny_model(tmp_path / "t", model_type, tie_word_embeddings=True))
    untied = file_tensors(write_tiny_model(tmp_path / "u", model_type, tie_word_embeddings=False))
    assert "lm_head.weight" not in tied
    assert untied.keys() == tied.keys() | {"lm_head.weight"}
    expert_tensors = [n for n in tied if ".mlp.experts." in n]
    if model_type.endswith("_moe"):
        assert "model.layers.0.mlp.experts.3.down_proj.weight" in tied
        assert len(expert_tensors) == 2 * 4 * 3  # layers x experts x (gate, up, down)
    else:
        assert expert_tensors == []


def test_tokenizer_round_trips_text(tmp_path):
    folder = train_tokenizer(tmp_path / "tok", vocab_size=400)
    assert sorted(p.name for p in folder.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 400
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert tokenizer.convert_tokens_to_ids(specials) == [397, 398, 399]
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"

    text = "Ada: Hello, Ben!\n3 + 4 = 7\n\n  Caf\u00e9 \u4f60\u597d\ttabs\r\n<|im_start|>user\nhi<|im_end|>"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    # transformers rebuilds Qwen2Tokenizer's pipeline in code; it must match tokenizer.json.
    assert ids == Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids

    messages = [{"role": "user", "content": "hi"}]
    chat = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_corpus_script_regenerates_committed_corpus(tmp_path):
    out = tmp_path / "corpus.txt"
    script = REPO / "data" / "make_corpus.py"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True)
    committed = (REPO / "data" / "corpus.txt").read_bytes()
    assert out.read_bytes() == committed
    assert 300_000 <= len(committed) <= 600_000


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unsupported"):
        write_tiny_model(tmp_path / "x", "llama")
    with pytest.raises(ValueError, match="dtype"):
        write_tiny_model(tmp_path / "x", dtype="float16")
    write_tiny_model(tmp_path / "y")
    with pytest.raises(FileExistsError):
        write_tiny_model(tmp_path / "y")
