"""The Qwen family through transformers: qwen2 (Qwen2, Qwen2.5), qwen2_moe, qwen3, qwen3_moe.

Models are transformers' own classes, never remote code. From a folder (a view is one),
``from_pretrained`` loads them as it would any checkpoint. From a manifest the tensors
are mapped from the blobs (adapters/blobs.py) and handed to the same ``from_pretrained``
as a ``state_dict``: transformers applies the same checkpoint conversions (MoE experts are
fused on load), dtype policy and weight tying, so both paths give bit-identical models.

Saving goes the other way with transformers' own save machinery, as ``save_pretrained``
does: ``remove_tied_weights_from_state_dict`` drops aliases (a tied ``lm_head.weight``),
and ``revert_weight_conversion`` restores the on-disk layout (one tensor per expert), so
the blobs are the ones an import of the saved folder would produce.

Missing, unexpected or mis-shaped tensors are errors here, not the warning table
transformers logs: a model silently half-initialised at random is worse than no model.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn

from adapters.base import Adapter, Decoder
from store.errors import ModelCheckError, SourceError, UnsupportedArchitectureError

class QwenAdapter(Adapter):
    """Any transformers causal LM whose checkpoints follow the Hugging Face conventions:
    the Qwen family today; another such architecture is one more entry in the table."""

    def hf_config(self, config: dict):
        """The transformers config object for config.json's contents (as AutoConfig builds it)."""
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        model_type = config.get("model_type")
        if model_type not in self.model_types:
            raise UnsupportedArchitectureError(model_type, list(self.model_types), " for this adapter")
        try:
            return CONFIG_MAPPING[model_type].from_dict(dict(config))
        except (TypeError, ValueError) as e:  # transformers' strict config validation
            raise SourceError("config.json",
                              f"config.json is not a valid {model_type} config ({e})") from None

    def build(self, config: dict, *, seed: int = 0, dtype: torch.dtype | None = None) -> nn.Module:
        from transformers import AutoModelForCausalLM

        hf_config = self.hf_config(config)
        with torch.random.fork_rng(devices=[]):  # the caller's RNG stream is left untouched
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(hf_config, dtype=dtype or _config_dtype(hf_config))
        return model.eval()

    def config_files(self, model: nn.Module) -> dict[str, bytes]:
        # What save_pretrained writes: the config records the weights' dtype and class.
        config = copy.deepcopy(model.config)
        config.dtype = str(model.dtype).removeprefix("torch.")
        config.architectures = [type(model).__name__]
        files = {"config.json": config.to_json_string(use_diff=True).encode()}
        if model.can_generate() and model.generation_config is not None:
            files["generation_config.json"] = model.generation_config.to_json_string(use_diff=True).encode()
        return files

    def from_tensors(self, config: dict, tensors: dict[str, torch.Tensor], *,
                     dtype: torch.dtype | None = None) -> nn.Module:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        hf_config = self.hf_config(config)
        model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(hf_config)]
        with _quiet_progress():
            model, info = model_class.from_pretrained(None, config=hf_config, state_dict=tensors,
                                                      dtype=dtype or "auto", output_loading_info=True)
        _check_loading_info(info, model_class.__name__)
        return model.eval()

    def load_folder(self, folder: Path, *, dtype: torch.dtype | None = None) -> nn.Module:
        from transformers import AutoModelForCausalLM
        from transformers.configuration_utils import PreTrainedConfig

        config_dict, _ = PreTrainedConfig.get_config_dict(str(folder))
        self.hf_config(config_dict)  # refuse other architectures before loading anything
        with _quiet_progress():
            model, info = AutoModelForCausalLM.from_pretrained(
                folder, dtype=dtype or "auto", trust_remote_code=False, output_loading_info=True)
        _check_loading_info(info, str(folder))
        return model.eval()

    def memory_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        from transformers.modeling_utils import remove_tied_weights_from_state_dict

        return remove_tied_weights_from_state_dict(model.state_dict(), model)

    def disk_tensors(self, model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from transformers.core_model_loading import revert_weight_conversion

        return revert_weight_conversion(model, state)

    def logits(self, model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids=input_ids, use_cache=False).logits

    def vocab_size(self, model: nn.Module) -> int:
        return model.get_output_embeddings().weight.shape[0]

    def context_length(self, model: nn.Module) -> int | None:
        return getattr(model.config, "max_position_embeddings", None)

    def decoder(self, model: nn.Module) -> Decoder:
        return CachedDecoder(self, model)


class CachedDecoder(Decoder):
    """Keeps transformers' key/value cache, so each step runs only the new tokens."""

    def __init__(self, adapter: Adapter, model: nn.Module):
        super().__init__(adapter, model)
        self.cache = None

    def step(self, new_ids: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=new_ids, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        return out.logits[0, -1]


def _config_dtype(config) -> torch.dtype:
    dtype = getattr(config, "dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def _check_loading_info(info: dict, what: str) -> None:
    for key, label in (("missing_keys", "is missing"), ("unexpected_keys", "has unexpected tensor"),
                       ("mismatched_keys", "has a wrongly shaped tensor")):
        names = sorted(k[0] if isinstance(k, tuple) else str(k) for k in info.get(key) or ())
        if names:
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            raise ModelCheckError(f"{what} {label} {names[0]}{more}",
                                  "the checkpoint does not match its config.json; re-import it")
    if info.get("error_msgs"):
        raise ModelCheckError(f"{what} could not be loaded: {info['error_msgs'][0]}")


class _quiet_progress:
    """transformers draws a 'Loading weights' bar per load; libraries should not print."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self._was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        if self._was_on:
            hf_logging.enable_progress_bar()
