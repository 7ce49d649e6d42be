"""The project's own tokenizer: a Qwen-style byte-level BPE trained on ``data/corpus.txt``.

The custom Transformer uses it when a run names no tokenizer (``training.models``), the
benchmarks and the tests' tiny models use it too. Deterministic: the same corpus and
vocabulary size write byte-identical files.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers,
                        processors)
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer



def project_corpus() -> Path:
    """``data/corpus.txt`` of the checkout, else the copy ``pip install .`` puts under
    ``<prefix>/share/modelstore/`` (pyproject.toml's data-files)."""
    checkout = Path(__file__).resolve().parents[1] / "data" / "corpus.txt"
    if checkout.is_file():
        return checkout
    return Path(sys.prefix) / "share" / "modelstore" / "corpus.txt"


DEFAULT_CORPUS = project_corpus()

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
