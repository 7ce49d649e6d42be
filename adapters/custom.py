"""The adapter of the project's own Transformer (adapters/transformer.py).

Its models are stored like any other: a ``config.json`` (with ``model_type``
``"modelstore_transformer"``), the tokenizer's files, and one canonical blob per tensor.
So they are deduplicated, validated, viewed and imported exactly like Hugging Face models;
only loading needs this adapter, since stock transformers does not know the model type.

config.json is flat, like a Hugging Face config: the fields of ``TransformerConfig`` plus
``model_type``, ``architectures``, ``dtype`` (of the stored weights) and ``format`` (this
file's version, so a future layout change is detected instead of misread). Unknown keys are
refused: a config written by a newer version is not silently half-understood.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import torch
import torch.nn as nn

from adapters.base import Adapter
from adapters.transformer import Transformer, TransformerConfig
from adapters.errors import ModelCheckError, UnsupportedArchitectureError
from store.errors import SourceError

MODEL_TYPE = "modelstore_transformer"
ARCHITECTURE = "Transformer"
CONFIG_FORMAT = 1
_HEADER_KEYS = ("model_type", "architectures", "dtype", "format")


def config_dict(config: TransformerConfig, dtype: torch.dtype = torch.float32) -> dict:
    """config.json's contents for a model of ``config`` whose weights are ``dtype``."""
    return {
        "model_type": MODEL_TYPE,
        "architectures": [ARCHITECTURE],
        "format": CONFIG_FORMAT,
        "dtype": str(dtype).removeprefix("torch."),
        **msgspec.to_builtins(config),
    }


def parse_config(config: dict) -> tuple[TransformerConfig, torch.dtype | None]:
    """The model's shape and its stored dtype, from config.json's contents."""
    if config.get("model_type") != MODEL_TYPE:
        raise UnsupportedArchitectureError(config.get("model_type"), [MODEL_TYPE],
                                           " for the custom Transformer")
    if config.get("format", CONFIG_FORMAT) != CONFIG_FORMAT:
        raise SourceError("config.json", f"config.json has format {config.get('format')!r}; this version "
                          f"reads format {CONFIG_FORMAT}", "upgrade modelstore to load this model")
    fields = {k: v for k, v in config.items() if k not in _HEADER_KEYS}
    try:
        shape = msgspec.convert(fields, TransformerConfig)
    except msgspec.ValidationError as e:
        raise SourceError("config.json", f"config.json is not a valid {MODEL_TYPE} config ({e})") from None
    dtype = getattr(torch, str(config.get("dtype")), None)
    return shape, dtype if isinstance(dtype, torch.dtype) else None


class CustomAdapter(Adapter):
    def build(self, config: dict, *, seed: int = 0, dtype: torch.dtype | None = None) -> nn.Module:
        shape, stored = parse_config(config)
        with torch.random.fork_rng(devices=[]):  # the caller's RNG stream is left untouched
            torch.manual_seed(seed)
            model = Transformer(shape)
        return model.to(dtype or stored or torch.float32).eval()

    def config_files(self, model: nn.Module) -> dict[str, bytes]:
        data = config_dict(model.config, next(model.parameters()).dtype)
        return {"config.json": (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()}

    def from_tensors(self, config: dict, tensors: dict[str, torch.Tensor], *,
                     dtype: torch.dtype | None = None) -> nn.Module:
        shape, _ = parse_config(config)
        with torch.device("meta"):  # no random init: every weight is about to be replaced
            model = Transformer(shape)
        expected = {k: tuple(t.shape) for k, t in self.memory_state(model).items()}
        missing = sorted(expected.keys() - tensors.keys())
        unexpected = sorted(tensors.keys() - expected.keys())
        wrong = sorted(k for k in expected.keys() & tensors.keys() if tuple(tensors[k].shape) != expected[k])
        for names, what in ((missing, "is missing"), (unexpected, "has unexpected tensor"),
                            (wrong, "has a wrongly shaped tensor")):
            if names:
                more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
                raise ModelCheckError(f"the {MODEL_TYPE} checkpoint {what} {names[0]}{more}",
                                      "its config.json and tensors do not match; re-save the model")
        # assign=True adopts the given tensors as the parameters (no copy); the tied head,
        # absent from the checkpoint, is re-pointed at the embedding afterwards.
        model.load_state_dict(tensors, strict=False, assign=True)
        model.tie_weights()
        if dtype is not None:
            model = model.to(dtype)
        return model.eval()

    def load_folder(self, folder: Path, *, dtype: torch.dtype | None = None) -> nn.Module:
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise SourceError(folder, f"cannot read {folder / 'config.json'} ({e})") from None
        index = folder / "model.safetensors.index.json"
        files = (sorted(set(json.loads(index.read_text())["weight_map"].values()))
                 if index.is_file() else ["model.safetensors"])
        tensors: dict[str, torch.Tensor] = {}
        for relpath in files:
            tensors.update(load_file(folder / relpath))
        return self.from_tensors(config, tensors, dtype=dtype)

    def memory_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        state = model.state_dict()
        if model.config.tie_embeddings:
            del state["lm_head.weight"]  # the same matrix as model.embed_tokens.weight
        return state

    def logits(self, model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids)

    def vocab_size(self, model: nn.Module) -> int:
        return model.config.vocab_size

    def context_length(self, model: nn.Module) -> int | None:
        return model.config.max_seq_len

    def load_tokenizer(self, folder: Path):
        from transformers import AutoTokenizer
        from transformers.configuration_utils import PreTrainedConfig

        # AutoTokenizer reads config.json to guess a tokenizer from the model type, and
        # warns about ours; tokenizer_config.json names the class, so a blank config will do.
        return AutoTokenizer.from_pretrained(folder, config=PreTrainedConfig(), trust_remote_code=False)
