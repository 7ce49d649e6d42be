"""Write a Qwen2.5-0.5B-shaped bfloat16 model folder with random weights, for benchmarks.

Why: import, hashing, view building and validation have to be measured on a model of real
size and layout (about 1 GB, 290 tensors), and the Hub cannot be reached. This writes the
real Qwen2.5-0.5B ``config.json`` and ``generation_config.json`` values (as published, in the
4.x format with ``torch_dtype`` and ``rope_theta``, which transformers 5.x still reads) and
the same tensor names, shapes and dtype, so ``AutoModelForCausalLM.from_pretrained`` loads
it like the real checkpoint: 24 layers x 12 tensors (q/k/v with biases, o, gate/up/down,
two RMSNorms), ``model.embed_tokens.weight`` and ``model.norm.weight``; ``lm_head`` is tied.

The safetensors bytes are written directly, without torch, so generation takes seconds:
each weight is random bfloat16 bit patterns with a random sign and a magnitude in
[2**-9, 2**-5) (finite, roughly the scale of an ``initializer_range=0.02`` init); norms are
ones. Each tensor's values come from its own RNG seeded by ``(SEED, name)``, so they do not
depend on how the tensors are split into shards. Files follow the Hub's layout:
``model.safetensors``, or ``model-0000i-of-0000N.safetensors`` plus
``model.safetensors.index.json``.

The tokenizer is the project's tiny one (``adapters.tokenizer.train_tokenizer``, 512 tokens): it
is there so the folder is complete, not to match the 151936-row embedding. Token ids above
511 are never produced, which is harmless for loading and benchmarking weights.

Usage::

    python -m bench.make_model bench/data/qwen2.5-0.5b-random [--shards N] [--check]

Idempotent: if the folder already holds a complete model of the requested layout (expected
config, headers and file sizes), nothing is written. Weights are written under temporary
names and renamed, and config.json is removed first and written last, so an interrupted run
is never mistaken for a complete one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from adapters.tokenizer import train_tokenizer

# Qwen/Qwen2.5-0.5B config.json and generation_config.json, as published.
CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 896,
    "initializer_range": 0.02,
    "intermediate_size": 4864,
    "max_position_embeddings": 32768,
    "max_window_layers": 24,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.1",
    "use_cache": True,
    "use_mrope": False,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "do_sample": False,
    "eos_token_id": 151643,
    "max_new_tokens": 2048,
    "transformers_version": "4.37.0",
}

SEED = 0
BF16_ONE = 0x3F80
CHUNK_ELEMENTS = 1 << 23  # bounds peak memory to a few tens of MB per tensor being written


def tensor_specs(config: dict = CONFIG) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a tied-embedding Qwen2 checkpoint, in the model's state_dict order."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    kv = config["num_key_value_heads"] * (hidden // config["num_attention_heads"])
    specs = [("model.embed_tokens.weight", (config["vocab_size"], hidden))]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        specs += [
            (p + "self_attn.q_proj.weight", (hidden, hidden)),
            (p + "self_attn.q_proj.bias", (hidden,)),
            (p + "self_attn.k_proj.weight", (kv, hidden)),
            (p + "self_attn.k_proj.bias", (kv,)),
            (p + "self_attn.v_proj.weight", (kv, hidden)),
            (p + "self_attn.v_proj.bias", (kv,)),
            (p + "self_attn.o_proj.weight", (hidden, hidden)),
            (p + "mlp.gate_proj.weight", (inter, hidden)),
            (p + "mlp.up_proj.weight", (inter, hidden)),
            (p + "mlp.down_proj.weight", (hidden, inter)),
            (p + "input_layernorm.weight", (hidden,)),
            (p + "post_attention_layernorm.weight", (hidden,)),
        ]
    return specs + [("model.norm.weight", (hidden,))]


def _nbytes(shape: tuple[int, ...]) -> int:
    return 2 * int(np.prod(shape))


def _tensor_chunks(name: str, shape: tuple[int, ...]):
    """Yield the tensor's bf16 bytes in chunks; norms are ones, everything else random."""
    n = int(np.prod(shape))
    if name.endswith("norm.weight"):
        yield np.full(n, BF16_ONE, dtype="<u2").tobytes()
        return
    rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])
    for start in range(0, n, CHUNK_ELEMENTS):
        r = np.frombuffer(rng.bytes(2 * min(CHUNK_ELEMENTS, n - start)), dtype="<u2")
        # Keep sign and 7 mantissa bits; exponent 118..121 -> |x| in [2**-9, 2**-5).
        bits = (r & 0x807F) | ((((r >> 7) & 0x3) + 118) << 7)
        yield bits.astype("<u2").tobytes()


def _header(specs: list[tuple[str, tuple[int, ...]]]) -> bytes:
    """A safetensors header for ``specs`` in order: 8-byte length, JSON padded to 8 bytes."""
    entries, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in specs:
        entries[name] = {"dtype": "BF16", "shape": list(shape),
                         "data_offsets": [offset, offset + _nbytes(shape)]}
        offset += _nbytes(shape)
    body = json.dumps(entries, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body


def _split(specs, shards: int):
    """Cut ``specs`` into exactly ``shards`` non-empty runs of roughly equal bytes."""
    total = sum(_nbytes(s) for _, s in specs)
    groups, done = [[]], 0
    for i, spec in enumerate(specs):
        groups[-1].append(spec)
        done += _nbytes(spec[1])
        k, left = len(groups), len(specs) - i - 1
        if k < shards and (done >= k * total / shards or left == shards - k):
            groups.append([])
    return groups


def layout(shards: int) -> dict[str, list]:
    """Weight file name -> its tensor specs, with the Hub's file naming."""
    specs = tensor_specs()
    if not 1 <= shards <= len(specs):
        raise ValueError(f"shards must be between 1 and {len(specs)}, got {shards}")
    if shards == 1:
        return {"model.safetensors": specs}
    return {f"model-{i + 1:05d}-of-{shards:05d}.safetensors": group
            for i, group in enumerate(_split(specs, shards))}


def _json_bytes(obj: dict) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _expected_json_files(files: dict[str, list]) -> dict[str, bytes]:
    out = {"config.json": _json_bytes(CONFIG), "generation_config.json": _json_bytes(GENERATION_CONFIG)}
    if len(files) > 1:
        out["model.safetensors.index.json"] = _json_bytes({
            "metadata": {"total_size": sum(_nbytes(s) for specs in files.values() for _, s in specs)},
            "weight_map": {name: fname for fname, specs in files.items() for name, _ in specs},
        })
    return out


def is_complete(out_dir: Path, shards: int) -> bool:
    """True when every file of the requested layout is present with the expected size/header."""
    files = layout(shards)
    for name, data in _expected_json_files(files).items():
        path = out_dir / name
        if not path.is_file() or path.read_bytes() != data:
            return False
    if not (out_dir / "tokenizer.json").is_file() or not (out_dir / "tokenizer_config.json").is_file():
        return False
    for fname, specs in files.items():
        path, header = out_dir / fname, _header(specs)
        expected_size = len(header) + sum(_nbytes(s) for _, s in specs)
        if not path.is_file() or path.stat().st_size != expected_size:
            return False
        with open(path, "rb") as f:
            if f.read(len(header)) != header:
                return False
    return True


def _write_atomic(path: Path, chunks) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
    os.replace(tmp, path)


def make_model(out_dir: str | os.PathLike, *, shards: int = 1) -> bool:
    """Write the model folder unless already complete; returns True if anything was written."""
    out_dir = Path(out_dir)
    if out_dir.is_dir() and is_complete(out_dir, shards):
        return False
    files = layout(shards)
    out_dir.mkdir(parents=True, exist_ok=True)
    # config.json is written last: its absence marks a folder that is still being written.
    (out_dir / "config.json").unlink(missing_ok=True)
    # Drop weight files of another layout, which from_pretrained could pick up instead.
    for stale in [*out_dir.glob("model*.safetensors"), out_dir / "model.safetensors.index.json"]:
        if stale.name not in files and stale.exists():
            stale.unlink()
    for fname, specs in files.items():
        tensors = (c for name, shape in specs for c in _tensor_chunks(name, shape))
        _write_atomic(out_dir / fname, itertools.chain([_header(specs)], tensors))
    train_tokenizer(out_dir)
    json_files = _expected_json_files(files)
    for name in sorted(json_files, key=lambda name: name == "config.json"):
        _write_atomic(out_dir / name, [json_files[name]])
    return True


def check_load(out_dir: Path) -> None:
    """Load with stock transformers, run one forward pass and report the time it took."""
    import torch
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    load_s = time.perf_counter() - start
    with torch.no_grad():
        logits = model(torch.arange(8).unsqueeze(0)).logits
    n_params = sum(p.numel() for p in model.parameters())
    print(f"from_pretrained: {load_s:.2f} s, dtype {model.dtype}, {n_params:,} parameters, "
          f"logits {tuple(logits.shape)} finite={bool(torch.isfinite(logits).all())}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--shards", type=int, default=1, help="number of safetensors files")
    parser.add_argument("--check", action="store_true", help="load it with from_pretrained afterwards")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        wrote = make_model(args.out_dir, shards=args.shards)
    except ValueError as e:
        parser.error(str(e))
    verb = "wrote" if wrote else "already complete:"
    print(f"{verb} {args.out_dir} ({len(tensor_specs())} tensors, {args.shards} file(s)) "
          f"in {time.perf_counter() - start:.1f} s")
    if args.check:
        check_load(args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
