"""Tiny Qwen-family model folders in Hugging Face format, for tests and ``make demo``.

Why: the Hugging Face Hub cannot be reached from the test suite or the demo, but the store,
the registry and the training stack all need real ``from_pretrained``-loadable folders of
each supported architecture. These builders write such folders in milliseconds, from
nothing but a seed and the project's own corpus (``data/corpus.txt``).

Everything is deterministic: the same call writes byte-identical files (weights come from
``torch.manual_seed(seed)`` inside a forked RNG, so callers' RNG state is untouched; the
tokenizer trainer is deterministic; every JSON file is written with sorted keys).

transformers 5.23 behaviour these builders rely on (checked against its source):

* ``from_config(config, dtype=...)`` and ``from_pretrained(..., dtype=...)``: ``torch_dtype=``
  still works but logs a deprecation warning. ``config.json`` records ``"dtype"`` (4.x wrote
  ``"torch_dtype"``; 5.x still reads the old key). ``from_pretrained`` defaults to
  ``dtype="auto"``, so a bfloat16 folder loads as bfloat16 (4.x loaded float32).
* MoE experts are *fused* in memory: ``mlp.experts.gate_up_proj`` ``[E, 2*I, H]`` (gate rows
  first, then up) and ``mlp.experts.down_proj`` ``[E, H, I]``, with the router at
  ``mlp.gate.weight``. On disk they stay per expert, as on the Hub:
  ``save_pretrained(save_original_format=True)`` (the default) reverts to
  ``mlp.experts.<e>.{gate,up,down}_proj.weight`` and ``from_pretrained`` re-fuses them
  (``conversion_mapping.py``, ``"qwen2_moe"`` entry, shared by ``qwen3_moe``). So file tensor
  names differ from ``model.state_dict()`` names for MoE types only; dense types are 1:1.
* Tied embeddings (``tie_word_embeddings=True``): ``lm_head.weight`` is not written; the
  checkpoint holds ``model.embed_tokens.weight`` once.
* ``Qwen3Config`` defaults ``head_dim`` to 128 whatever the hidden size, so it must be set.
* Configs are strict dataclasses validated on construction and on load: e.g. editing
  ``num_hidden_layers`` in config.json without ``layer_types`` fails to load.
* Missing/unexpected checkpoint keys are reported as a "LOAD REPORT" table logged at
  warning level on the ``transformers`` logger; tests assert nothing is logged.
* Random init is HF's ``_init_weights``: matrices (and MoE routers) ~ N(0, 0.02), RMSNorm
  weights ones and q/k/v biases zeros, so those last two do not depend on ``seed``.
* The first ``from_config`` in a process costs ~1.5 s (lazy imports); later ones ~10 ms.
* ``save_pretrained`` writes config.json, generation_config.json and model.safetensors with
  metadata ``{"format": "pt"}``; its ``max_shard_size`` cannot ask for an exact shard count,
  so ``shards > 1`` is done here, with HF's file names and index layout.
* A ``tokenizer_class`` of ``"Qwen2Tokenizer"`` makes ``AutoTokenizer`` rebuild the backend
  from tokenizer.json's vocab and merges with Qwen's hard-coded normalizer, pre-tokenizer
  and decoder (tokenizer.json's own pipeline is ignored), so ours uses exactly that pipeline.
  Extra specials are listed under ``extra_special_tokens`` (5.x name of
  ``additional_special_tokens``).
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers,
                        processors)
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer

SUPPORTED_TINY_TYPES = ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe")

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus.txt"

# Qwen's specials, appended after the BPE vocabulary as in the real Qwen tokenizers.
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

# Same split regex as transformers' Qwen2Tokenizer (and the Hub's Qwen tokenizer.json).
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

TINY_MAX_POSITIONS = 1024
NUM_EXPERTS = 4
EXPERTS_PER_TOKEN = 2


def _dump_json(obj: dict) -> bytes:
    """HF's own JSON style (indent 2, sorted keys, trailing newline), so bytes are stable."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


@functools.lru_cache(maxsize=8)
def _tokenizer_files(corpus_text: str, vocab_size: int) -> tuple[tuple[str, bytes], ...]:
    """Train once per (corpus, vocab size) and return ``(file name, bytes)`` pairs.

    Cached because a test session builds dozens of tiny models; training takes ~0.1 s.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} "
                         "(256 byte tokens + the specials)")
    tokenizer = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                                    use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([corpus_text], trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    if tokenizer.get_vocab_size() != vocab_size:
        raise ValueError(f"corpus too small for vocab_size={vocab_size} (got {tokenizer.get_vocab_size()})")

    config = {
        "add_prefix_space": False,
        "bos_token": None,
        "chat_template": CHATML_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": ENDOFTEXT,
        "errors": "replace",
        "extra_special_tokens": [IM_START, IM_END],
        "model_max_length": 32768,
        "pad_token": ENDOFTEXT,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    return (
        ("tokenizer.json", (tokenizer.to_str(pretty=True) + "\n").encode("utf-8")),
        ("tokenizer_config.json", _dump_json(config)),
    )


def train_tokenizer(folder: str | os.PathLike, *, vocab_size: int = 512,
                    corpus: str | os.PathLike = DEFAULT_CORPUS) -> Path:
    """Write a Qwen-style byte-level BPE tokenizer (tokenizer.json, tokenizer_config.json).

    ``vocab_size`` counts everything: 256 byte tokens, the learned merges, and the three
    specials ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` at the last three ids.
    ``transformers.AutoTokenizer.from_pretrained(folder)`` loads it offline as a
    ``Qwen2Tokenizer`` with eos = pad = ``<|endoftext|>`` and a ChatML chat template.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = Path(corpus).read_text(encoding="utf-8")
    for name, data in _tokenizer_files(text, vocab_size):
        (folder / name).write_bytes(data)
    return folder


def tiny_config(model_type: str = "qwen2", *, hidden_size: int = 32, num_layers: int = 2,
                vocab_size: int = 512, tie_word_embeddings: bool | None = None,
                dtype: str = "float32"):
    """The transformers config for a tiny model of ``model_type``.

    4 query heads and 2 KV heads (grouped-query attention, as in every Qwen model), an MLP
    twice the hidden size, and for MoE types 4 experts with top-2 routing. Token ids follow
    :func:`train_tokenizer`: ``<|endoftext|>`` (``vocab_size - 3``) is bos and eos, as in
    Qwen base checkpoints. ``tie_word_embeddings=None`` follows the family's small
    checkpoints: tied for dense qwen2/qwen3 (Qwen2.5-0.5B, Qwen3-0.6B), untied for MoE.
    """
    from transformers import Qwen2Config, Qwen2MoeConfig, Qwen3Config, Qwen3MoeConfig

    if model_type not in SUPPORTED_TINY_TYPES:
        raise ValueError(f"unsupported tiny model type {model_type!r}; "
                         f"expected one of {SUPPORTED_TINY_TYPES}")
    num_heads = 4
    if hidden_size % (2 * num_heads):  # rotary embeddings need an even head_dim
        raise ValueError(f"hidden_size must be a multiple of {2 * num_heads}, got {hidden_size}")
    moe = model_type.endswith("_moe")
    eot = vocab_size - len(SPECIAL_TOKENS)
    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=2,
        max_position_embeddings=TINY_MAX_POSITIONS,
        tie_word_embeddings=(not moe) if tie_word_embeddings is None else tie_word_embeddings,
        bos_token_id=eot,
        eos_token_id=eot,
        dtype=dtype,
    )
    experts = dict(num_experts=NUM_EXPERTS, num_experts_per_tok=EXPERTS_PER_TOKEN,
                   moe_intermediate_size=hidden_size // 2)
    if model_type == "qwen2":
        return Qwen2Config(**common)
    if model_type == "qwen2_moe":
        return Qwen2MoeConfig(**common, **experts, shared_expert_intermediate_size=hidden_size)
    head_dim = hidden_size // num_heads
    if model_type == "qwen3":
        return Qwen3Config(**common, head_dim=head_dim)
    return Qwen3MoeConfig(**common, **experts, head_dim=head_dim)


def write_tiny_model(folder: str | os.PathLike, model_type: str = "qwen2", *,
                     hidden_size: int = 32, num_layers: int = 2, vocab_size: int = 512,
                     dtype: str = "float32", seed: int = 0, shards: int = 1,
                     tie_word_embeddings: bool | None = None, with_tokenizer: bool = True) -> Path:
    """Write a loadable Hugging Face model folder with random, seed-determined weights.

    Files: config.json, generation_config.json, model.safetensors (or ``shards`` files
    ``model-0000i-of-0000N.safetensors`` plus ``model.safetensors.index.json``), and with
    ``with_tokenizer`` the files of :func:`train_tokenizer`. ``folder`` must be absent or
    empty, so no stale file from an earlier layout can shadow the new one. ``dtype`` is
    ``"float32"`` or ``"bfloat16"``. See :func:`tiny_config` for the shapes.
    """
    # Imported here, not at module level: train_tokenizer (used by bench/) needs no torch.
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty")

    config = tiny_config(model_type, hidden_size=hidden_size, num_layers=num_layers,
                         vocab_size=vocab_size, tie_word_embeddings=tie_word_embeddings, dtype=dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))

    # save_pretrained draws a tqdm bar per call; hundreds of them would drown test output.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    if shards > 1:
        _reshard(folder, shards)
    if with_tokenizer:
        train_tokenizer(folder, vocab_size=vocab_size)
    return folder


def _natural_key(name: str) -> list:
    """Sort ``layers.10`` after ``layers.9``, so shards follow the model's layer order."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _reshard(folder: Path, shards: int) -> None:
    """Split ``model.safetensors`` into exactly ``shards`` files plus an HF-style index.

    Tensors are taken in layer order and cut into contiguous runs of (nearly) equal count,
    so each shard is non-empty and a layer's tensors mostly share a file, as on the Hub.
    """
    from safetensors.torch import load_file, save_file

    single = folder / "model.safetensors"
    tensors = load_file(single)
    names = sorted(tensors, key=_natural_key)
    if shards > len(names):
        raise ValueError(f"cannot split {len(names)} tensors into {shards} shards")
    weight_map: dict[str, str] = {}
    for i in range(shards):
        shard_name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = names[i * len(names) // shards:(i + 1) * len(names) // shards]
        save_file({n: tensors[n] for n in part}, folder / shard_name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard_name))
    index = {
        "metadata": {
            "total_parameters": sum(t.numel() for t in tensors.values()),
            "total_size": sum(t.numel() * t.element_size() for t in tensors.values()),
        },
        "weight_map": weight_map,
    }
    (folder / "model.safetensors.index.json").write_bytes(_dump_json(index))
    single.unlink()
