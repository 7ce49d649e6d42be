"""What a config.json implies about its checkpoint, in closed form: no torch, microseconds.

``expected_tensors(config)`` gives every tensor name and shape a checkpoint of the config
holds on disk (the names of the files, not transformers' in-memory names: MoE experts one
tensor each), for the members whose layout is plain enough to write down: qwen2, qwen2_moe,
qwen3 and qwen3_moe. It returns None for every other member; the import then builds the
model on the meta device in the load-check worker (``Adapter.expected_tensors``), which is
exact for anything transformers can build, at the cost of importing torch.

The formulas follow transformers' modeling files (5.23): head_dim is the config's, else
hidden_size / num_attention_heads; qwen2 (and qwen2_moe) attention has q/k/v biases, qwen3
(and qwen3_moe) has q/k RMSNorms instead; an MoE layer is sparse when it is not in
``mlp_only_layers`` and ``(layer + 1) % decoder_sparse_step == 0``; qwen2_moe adds a
shared expert and its gate; a tied head stores no ``lm_head.weight``. A test checks every
formula against the meta-device model of the same config.

``compare(expected, found)`` names the first difference as one line.
"""

from __future__ import annotations

Shape = tuple[int, ...]

CLOSED_FORM_TYPES = ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe")


def expected_tensors(config: dict) -> dict[str, Shape] | None:
    """On-disk tensor name -> shape for ``config``, or None where no closed form is written."""
    model_type = config.get("model_type")
    if model_type not in CLOSED_FORM_TYPES:
        return None
    try:
        return _decoder(config, model_type)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None  # an odd config: the meta-device build (or transformers) says what is wrong


def _decoder(c: dict, model_type: str) -> dict[str, Shape]:
    hidden, vocab, layers = int(c["hidden_size"]), int(c["vocab_size"]), int(c["num_hidden_layers"])
    heads = int(c["num_attention_heads"])
    kv_heads = int(c.get("num_key_value_heads") or heads)
    head_dim = int(c.get("head_dim") or hidden // heads)
    qwen3 = model_type.startswith("qwen3")
    moe = model_type.endswith("_moe")
    out: dict[str, Shape] = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    if not c.get("tie_word_embeddings", False):
        out["lm_head.weight"] = (vocab, hidden)
    for i in range(layers):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = (hidden,)
        out[p + "post_attention_layernorm.weight"] = (hidden,)
        for proj, rows in (("q", heads), ("k", kv_heads), ("v", kv_heads)):
            out[f"{p}self_attn.{proj}_proj.weight"] = (rows * head_dim, hidden)
            if _attention_bias(c, model_type):
                out[f"{p}self_attn.{proj}_proj.bias"] = (rows * head_dim,)
        out[p + "self_attn.o_proj.weight"] = (hidden, heads * head_dim)
        if qwen3:
            out[p + "self_attn.q_norm.weight"] = (head_dim,)
            out[p + "self_attn.k_norm.weight"] = (head_dim,)
        if moe and _sparse(c, i):
            experts, inner = _experts(c), int(c["moe_intermediate_size"])
            out[p + "mlp.gate.weight"] = (experts, hidden)
            for e in range(experts):
                out.update(_mlp(f"{p}mlp.experts.{e}.", hidden, inner))
            if model_type == "qwen2_moe":
                out.update(_mlp(p + "mlp.shared_expert.", hidden, int(c["shared_expert_intermediate_size"])))
                out[p + "mlp.shared_expert_gate.weight"] = (1, hidden)
        else:
            out.update(_mlp(p + "mlp.", hidden, int(c["intermediate_size"])))
    return out


def _attention_bias(c: dict, model_type: str) -> bool:
    if model_type.startswith("qwen2"):
        return bool(c.get("qkv_bias", True)) if model_type == "qwen2_moe" else True
    return bool(c.get("attention_bias", False))


def _sparse(c: dict, layer: int) -> bool:
    step = int(c.get("decoder_sparse_step") or 1)
    return layer not in (c.get("mlp_only_layers") or []) and _experts(c) > 0 and (layer + 1) % step == 0


def _experts(c: dict) -> int:
    # The Hub's configs say num_experts; transformers 5 writes num_local_experts (its attribute_map).
    return int(c.get("num_experts") or c.get("num_local_experts") or 0)


def _mlp(prefix: str, hidden: int, inner: int) -> dict[str, Shape]:
    return {prefix + "gate_proj.weight": (inner, hidden), prefix + "up_proj.weight": (inner, hidden),
            prefix + "down_proj.weight": (hidden, inner)}


def compare(expected: dict[str, Shape], found: dict[str, Shape], kept: list[str] = ()) -> str | None:
    """The first difference between what the config implies and what the files hold, as one
    line; None when they agree. ``kept``: regexes of extra tensors allowed by design (mtp.*)."""
    import re

    for name in sorted(expected):
        if name not in found:
            return f"config.json implies tensor {name} {list(expected[name])}, which no weight file holds"
        if tuple(found[name]) != tuple(expected[name]):
            return (f"tensor {name} has shape {list(found[name])}, config.json implies "
                    f"{list(expected[name])}")
    patterns = [re.compile(p) for p in kept]
    for name in sorted(found):
        if name not in expected and not any(p.search(name) for p in patterns):
            return f"tensor {name} {list(found[name])} is not part of the model config.json describes"
    return None
