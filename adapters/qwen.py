"""The Qwen family through transformers: every member of the table in adapters/family.py.

Text members (qwen2, qwen2_moe, qwen3, qwen3_moe, qwen3_next) load with
``AutoModelForCausalLM``; the vision-language ones (qwen2_vl, qwen2_5_vl, qwen3_vl,
qwen3_vl_moe) and the natively multimodal Qwen3.5 (qwen3_5, qwen3_5_moe) with
``AutoModelForImageTextToText``. Models are transformers' own classes, never remote code. From a folder (a view is one),
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
Tensors the model class skips by design (``_keys_to_ignore_on_load_unexpected``: the
``mtp.*`` multi-token-prediction head of Qwen3-Next and Qwen3.5, which vLLM uses for
speculative decoding) are not unexpected: the store keeps them like any tensor
(``kept_by_design`` tells the trainer to carry them into every checkpoint unchanged).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
import torch.nn as nn

from adapters.base import Adapter, Decoder
from adapters.family import auto_class_name, takes_images
from adapters.errors import ModelCheckError, UnsupportedArchitectureError
from store.errors import SourceError


class _CpuKernelAdvice(logging.Filter):
    """Drops transformers' "install flash-linear-attention / causal_conv1d" advice on machines
    without CUDA: those kernels are GPU-only, so on a CPU the reference path is the only one,
    and the advice is noise on every ``generate`` of a hybrid model (Qwen3-Next, Qwen3.5)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return torch.cuda.is_available() or "falling back to its reference PyTorch" not in record.getMessage()


logging.getLogger("transformers.integrations.hub_kernels").addFilter(_CpuKernelAdvice())


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
        hf_config = self.hf_config(config)
        with torch.random.fork_rng(devices=[]):  # the caller's RNG stream is left untouched
            torch.manual_seed(seed)
            model = _auto_class(config).from_config(hf_config, dtype=dtype or _config_dtype(hf_config))
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
        hf_config = self.hf_config(config)
        model_class = _auto_class(config)._model_mapping[type(hf_config)]
        with _quiet_progress():
            model, info = model_class.from_pretrained(None, config=hf_config, state_dict=tensors,
                                                      dtype=dtype or "auto", output_loading_info=True)
        _check_loading_info(info, model_class.__name__)
        return model.eval()

    def load_folder(self, folder: Path, *, dtype: torch.dtype | None = None) -> nn.Module:
        from transformers.configuration_utils import PreTrainedConfig

        config_dict, _ = PreTrainedConfig.get_config_dict(str(folder))
        self.hf_config(config_dict)  # refuse other architectures before loading anything
        with _quiet_progress():
            model, info = _auto_class(config_dict).from_pretrained(
                folder, dtype=dtype or "auto", trust_remote_code=False, output_loading_info=True)
        _check_loading_info(info, str(folder))
        return model.eval()

    def kept_by_design_for(self, config: dict) -> list[str]:
        """``kept_by_design`` of the model class ``config`` loads as (no model is built)."""
        hf_config = self.hf_config(config)
        model_class = _auto_class(config)._model_mapping[type(hf_config)]
        return list(getattr(model_class, "_keys_to_ignore_on_load_unexpected", None) or [])

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
        return getattr(model.config.get_text_config(), "max_position_embeddings", None)

    def decoder(self, model: nn.Module) -> Decoder:
        return CachedDecoder(self, model)

    def takes_images(self, model: nn.Module) -> bool:
        return takes_images(model.config.to_dict())

    def kept_by_design(self, model: nn.Module) -> list[str]:
        return list(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or [])

    def image_inputs(self, model: nn.Module, folder: Path | None, tokenizer, prompt: str,
                     image) -> dict[str, torch.Tensor]:
        from adapters.vision import image_inputs

        return image_inputs(folder, model, tokenizer, prompt, image)

    def image_check(self, model: nn.Module, folder: Path) -> str | None:
        """One generated image through the processor (when the folder has one) and the vision
        tower: finite logits over the whole sequence. None for text-only models."""
        if not self.takes_images(model):
            return None
        from adapters.vision import probe_image

        if (folder / "preprocessor_config.json").is_file():
            inputs = self.image_inputs(model, folder, self.load_tokenizer(folder), "Describe the image.",
                                       probe_image())
            how = "through its processor"
        else:
            inputs = _raw_image_inputs(model)
            how = "as raw patches (no processor files)"
        device = next(model.parameters()).device
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        with torch.inference_mode():
            logits = model(**inputs, use_cache=False).logits
        length = inputs["input_ids"].shape[1]
        if tuple(logits.shape[:2]) != (1, length) or not torch.isfinite(logits).all():
            raise ModelCheckError(f"the forward pass over an image {how} gave logits of shape "
                                  f"{tuple(logits.shape)}, not finite (1, {length}, V)")
        grid = "x".join(str(int(v)) for v in inputs["image_grid_thw"][0])
        return f"an image {how} (grid {grid}): finite logits"


class CachedDecoder(Decoder):
    """Keeps transformers' key/value cache, so each step runs only the new tokens."""

    def __init__(self, adapter: Adapter, model: nn.Module):
        super().__init__(adapter, model)
        self.cache = None
        inner = getattr(model, "model", None)
        if hasattr(inner, "rope_deltas"):  # VL models keep an image's position offset: not this one's
            inner.rope_deltas = None

    def step(self, new_ids: torch.Tensor, **inputs) -> torch.Tensor:
        """``inputs``: the first step's other model inputs (an image's pixels, its grid)."""
        out = self.model(input_ids=new_ids, past_key_values=self.cache, use_cache=True, **inputs)
        self.cache = out.past_key_values
        return out.logits[0, -1]


def _auto_class(config: dict):
    """The transformers auto class for config.json's model (adapters/family.py)."""
    import transformers

    return getattr(transformers, auto_class_name(config))


def _raw_image_inputs(model: nn.Module) -> dict[str, torch.Tensor]:
    """An image as the vision tower takes it, without a processor: a 2x2 grid of merged
    patches (random pixels) between the vision start and end tokens."""
    config = model.config
    vision = config.vision_config
    merge, patch = vision.spatial_merge_size, vision.patch_size
    temporal, channels = vision.temporal_patch_size, vision.in_channels
    grid = torch.tensor([[1, 2 * merge, 2 * merge]])
    patches = int(grid.prod())
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(patches, channels * temporal * patch * patch, generator=generator)
    tokens = patches // merge ** 2
    ids = torch.tensor([[config.vision_start_token_id] + [config.image_token_id] * tokens
                        + [config.vision_end_token_id]])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "mm_token_type_ids": (ids == config.image_token_id).int(),
            "pixel_values": pixels.to(model.dtype), "image_grid_thw": grid}


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
