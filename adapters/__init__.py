"""Architecture adapters, selected by a config's ``model_type``.

The table maps each supported ``model_type`` to the adapter that builds, loads and saves
it. It is plain data so that commands which only need to know *whether* an architecture
is supported (import's early check, list-models) never import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from adapters.family import FAMILY, REFUSED
from adapters.errors import UnsupportedArchitectureError

if TYPE_CHECKING:
    from adapters.base import Adapter

# model_type -> "module:Class" of its adapter, imported only when a model is built: every
# member of the Qwen family table (adapters/family.py), and the project's own model.
ADAPTERS: dict[str, str] = {
    **dict.fromkeys(FAMILY, "adapters.qwen:QwenAdapter"),
    "modelstore_transformer": "adapters.custom:CustomAdapter",
}


def supported_model_types() -> list[str]:
    return sorted(ADAPTERS)


def check_supported(model_type: str | None, where: str = "") -> str:
    """Return ``model_type`` if an adapter handles it, else raise listing the supported ones."""
    if not isinstance(model_type, str) or model_type not in ADAPTERS:
        raise UnsupportedArchitectureError(
            model_type if isinstance(model_type, str) else None, supported_model_types(), where,
            why=REFUSED.get(model_type) if isinstance(model_type, str) else None,
        )
    return model_type


_instances: dict[str, Adapter] = {}


def get_adapter(model_type: str | None, where: str = "") -> Adapter:
    """The adapter for ``model_type`` (imports torch and the adapter's module on first use)."""
    spec = ADAPTERS[check_supported(model_type, where)]
    if spec not in _instances:
        module, _, cls = spec.partition(":")
        _instances[spec] = getattr(importlib.import_module(module), cls)()
    return _instances[spec]
