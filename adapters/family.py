"""The Qwen family as one table: each ``model_type`` the store imports, and how to load it.

Plain data, no torch: import's early check and ``list-models`` read it without loading any
model code. A row says which transformers classes build the member:

* ``config_class``: the transformers config class of config.json's ``model_type``;
* ``auto_class``: ``AutoModelForCausalLM`` for text models, ``AutoModelForImageTextToText``
  for the vision-language ones and for Qwen3.5, which is natively multimodal (its Hub
  checkpoints hold a vision tower; a text-only ``architectures`` entry, e.g.
  ``Qwen3_5ForCausalLM``, loads the causal LM and leaves the tower on disk);
* ``text_config``: where the language model's settings live: ``None`` at the top of
  config.json, else the key of the composite config's text part (``text_config``);
* ``vision``: the member takes images (``generate --image``, the load check's image pass);
* ``examples``: repos on the Hub today, for the README and error messages.

Adding a member is one row here (and one tiny model in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

CAUSAL_LM = "AutoModelForCausalLM"
IMAGE_TEXT_TO_TEXT = "AutoModelForImageTextToText"


@dataclass(frozen=True)
class Member:
    model_type: str
    config_class: str
    auto_class: str
    text_config: str | None
    vision: bool
    examples: tuple[str, ...]
    kind: str  # one phrase for the README and `model-info`


def _text(model_type: str, config_class: str, kind: str, *examples: str) -> Member:
    return Member(model_type, config_class, CAUSAL_LM, None, False, examples, kind)


def _vl(model_type: str, config_class: str, kind: str, *examples: str) -> Member:
    return Member(model_type, config_class, IMAGE_TEXT_TO_TEXT, "text_config", True, examples, kind)


FAMILY: dict[str, Member] = {m.model_type: m for m in (
    _text("qwen2", "Qwen2Config", "dense", "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-7B-Instruct"),
    _text("qwen2_moe", "Qwen2MoeConfig", "MoE", "Qwen/Qwen1.5-MoE-A2.7B", "Qwen/Qwen2-57B-A14B"),
    _text("qwen3", "Qwen3Config", "dense", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-8B"),
    _text("qwen3_moe", "Qwen3MoeConfig", "MoE", "Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-235B-A22B"),
    _text("qwen3_next", "Qwen3NextConfig", "MoE, hybrid attention (Gated DeltaNet), MTP",
          "Qwen/Qwen3-Next-80B-A3B-Instruct"),
    _vl("qwen3_5", "Qwen3_5Config", "dense, hybrid attention, MTP, natively multimodal",
        "Qwen/Qwen3.5-9B", "Qwen/Qwen3.5-27B", "Qwen/Qwen3.6-27B"),
    _text("qwen3_5_text", "Qwen3_5TextConfig", "dense, hybrid attention, text only"),
    _vl("qwen3_5_moe", "Qwen3_5MoeConfig", "MoE, hybrid attention, MTP, natively multimodal",
        "Qwen/Qwen3.5-35B-A3B", "Qwen/Qwen3.5-122B-A10B", "Qwen/Qwen3.6-35B-A3B"),
    _text("qwen3_5_moe_text", "Qwen3_5MoeTextConfig", "MoE, hybrid attention, text only"),
    _vl("qwen2_vl", "Qwen2VLConfig", "vision-language", "Qwen/Qwen2-VL-2B-Instruct",
        "Qwen/Qwen2-VL-7B-Instruct"),
    _vl("qwen2_5_vl", "Qwen2_5_VLConfig", "vision-language", "Qwen/Qwen2.5-VL-3B-Instruct",
        "Qwen/Qwen2.5-VL-7B-Instruct"),
    _vl("qwen3_vl", "Qwen3VLConfig", "vision-language", "Qwen/Qwen3-VL-8B-Instruct"),
    _vl("qwen3_vl_moe", "Qwen3VLMoeConfig", "vision-language, MoE (fused experts)",
        "Qwen/Qwen3-VL-30B-A3B-Instruct"),
)}

# model_types that are Qwen but not loadable without running the repo's own code.
REFUSED: dict[str, str] = {
    "qwen": "Qwen (v1) checkpoints need the repo's remote code, which modelstore never runs; "
            "Qwen1.5 and later (model_type qwen2, qwen3, ...) are the native line",
}


def member(model_type: str | None) -> Member | None:
    return FAMILY.get(model_type) if isinstance(model_type, str) else None


def auto_class_name(config: dict) -> str:
    """The auto class that loads config.json's model: the member's, unless ``architectures``
    asks for the causal LM of a multimodal member (a text-only export)."""
    row = FAMILY[config["model_type"]]
    architectures = config.get("architectures")
    if (row.auto_class != CAUSAL_LM and isinstance(architectures, list) and architectures
            and isinstance(architectures[0], str) and architectures[0].endswith("ForCausalLM")):
        return CAUSAL_LM
    return row.auto_class


def takes_images(config: dict) -> bool:
    return member(config.get("model_type")) is not None and auto_class_name(config) == IMAGE_TEXT_TO_TEXT
