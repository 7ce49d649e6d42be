"""Architecture adapters, selected by a config's ``model_type``.

The table maps each supported ``model_type`` to the adapter that builds, loads and saves
it. It is plain data so that commands which only need to know *whether* an architecture
is supported (import's early check, list-models) never import torch.
"""

from __future__ import annotations

from store.errors import UnsupportedArchitectureError

# model_type -> "module:Class" of its adapter, imported only when a model is built.
ADAPTERS: dict[str, str] = {
    "qwen2": "adapters.qwen:QwenAdapter",
    "qwen2_moe": "adapters.qwen:QwenAdapter",
    "qwen3": "adapters.qwen:QwenAdapter",
    "qwen3_moe": "adapters.qwen:QwenAdapter",
}


def supported_model_types() -> list[str]:
    return sorted(ADAPTERS)


def check_supported(model_type: str | None, where: str = "") -> str:
    """Return ``model_type`` if an adapter handles it, else raise listing the supported ones."""
    if not isinstance(model_type, str) or model_type not in ADAPTERS:
        raise UnsupportedArchitectureError(
            model_type if isinstance(model_type, str) else None, supported_model_types(), where
        )
    return model_type
