"""Run config files: one TOML file drives ``train`` and ``generate``.

Read with the standard library (``tomllib``) and decoded into msgspec Structs, so every key
is typed and checked: an unknown key, a wrong type or an out-of-range value is one error
line naming the key (``run.toml: unknown key 'model.n_layers'``). Example::

    model_name = "qwen-tiny"       # a registered model; empty or absent: the custom Transformer
    tokenizer = ""                 # a registered model's name or a folder; empty: the model's own
    data = "corpus.txt"            # text file or folder (relative to this file)
    seq_len = 128
    freeze = ["model.embed_tokens.*", "model.layers.[0-5].*"]
    output_name = "qwen-tiny-ft"

    [model]                        # the custom Transformer's shape (model_name empty)
    n_layer = 4
    n_embd = 128

    [generate]
    prompt = "Once upon a time"
    max_new_tokens = 64

Relative paths (``data``, a ``tokenizer`` folder) are resolved against the config file's
folder, so a config means the same thing from any working directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from adapters.tokenizer import DEFAULT_CORPUS
from training.errors import ConfigError

PROJECT_CORPUS = DEFAULT_CORPUS  # the default data: the project's own corpus

PositiveInt = Annotated[int, Meta(ge=1)]
Count = Annotated[int, Meta(ge=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]


class _Table(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A table of the config file: unknown keys are refused."""


class ModelShape(_Table):
    """``[model]``: the custom Transformer's shape (see adapters/transformer.py)."""

    n_layer: PositiveInt = 4
    n_head: PositiveInt = 4
    n_kv_head: PositiveInt = 4  # fewer than n_head: grouped-query attention
    n_embd: PositiveInt = 128
    mlp_hidden: Count = 0  # 0: about 8/3 * n_embd, the SwiGLU default
    vocab_size: PositiveInt = 512  # the project tokenizer's size; with another tokenizer, at least its size
    max_seq_len: PositiveInt = 256  # context length
    rope_theta: PositiveFloat = 10000.0
    norm_eps: PositiveFloat = 1e-5
    tie_embeddings: bool = True
    dropout: Annotated[float, Meta(ge=0.0, lt=1.0)] = 0.0

    def transformer_config(self, *, vocab_size: int | None = None, eos_token_id: int | None = None):
        """The model's ``TransformerConfig`` (imports torch); raises ValueError naming the key."""
        from adapters.transformer import TransformerConfig

        fields = msgspec.structs.asdict(self)
        if vocab_size is not None:
            fields["vocab_size"] = vocab_size
        return TransformerConfig(**fields, eos_token_id=eos_token_id)


class GenerateSettings(_Table):
    """``[generate]``: sampling settings; the command line overrides each of them."""

    prompt: str = ""
    max_new_tokens: PositiveInt = 64
    temperature: Annotated[float, Meta(ge=0.0)] = 0.8  # 0: greedy (always the likeliest token)
    top_k: Count = 50  # sample among the k likeliest tokens; 0: among all


class RunConfig(_Table):
    model_name: str = ""
    tokenizer: str = ""
    data: str = str(PROJECT_CORPUS)
    seq_len: PositiveInt = 128
    batch_size: PositiveInt = 16
    lr: PositiveFloat = 3e-4
    max_steps: PositiveInt = 1000
    save_every: Count = 200  # 0: only at the end
    eval_every: Count = 100  # 0: only at the end
    seed: Count = 0
    warmup_steps: Count = 0  # linear warm-up of the learning rate over the first steps; then constant
    weight_decay: Annotated[float, Meta(ge=0.0)] = 0.0  # AdamW's, on matrices only (not norms, biases)
    grad_clip: Annotated[float, Meta(ge=0.0)] = 1.0  # max global gradient norm; 0: no clipping
    eval_fraction: Annotated[float, Meta(ge=0.0, lt=1.0)] = 0.05  # held-out tail of the data; 0: no eval
    eval_batches: PositiveInt = 8  # batches of the held-out split per evaluation (the same ones each time)
    freeze: list[str] = []
    output_name: str = ""
    device: str = "auto"
    dtype: str = "auto"
    model: ModelShape = msgspec.field(default_factory=ModelShape)
    generate: GenerateSettings = msgspec.field(default_factory=GenerateSettings)

    @property
    def uses_custom_model(self) -> bool:
        return not self.model_name


_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`(?: - at `\$(?P<at>[^`]*)`)?$")
_AT = re.compile(r"^(?P<problem>.*) - at `\$(?P<at>[^`]*)`$", re.S)


def _key(at: str, field: str = "") -> str:
    """msgspec's path (``.model.n_layer``, ``.freeze[0]``) as the key a user wrote."""
    path = at.lstrip(".")
    return f"{path}.{field}" if path and field else path or field


def _config_error(path: Path, error: msgspec.ValidationError) -> ConfigError:
    text = str(error)
    match = _UNKNOWN.match(text)
    if match:
        key = _key(match["at"] or "", match["key"])
        return ConfigError(path, f"unknown key {key!r}",
                           "remove it or check its spelling (keys are listed in the README)")
    match = _AT.match(text)
    if match and match["at"]:
        return ConfigError(path, f"key {_key(match['at'])!r}: {_plain(match['problem'])}")
    return ConfigError(path, _plain(text))


def _plain(problem: str) -> str:
    """msgspec's wording in TOML's terms: "Expected `object`" -> "expected a table"."""
    problem = problem.replace("`object`", "a table").replace("`array`", "an array").replace("`", "")
    return problem[:1].lower() + problem[1:]


def parse_config(text: str, path: Path | str = "<config>") -> RunConfig:
    """Decode TOML text into a ``RunConfig`` (relative paths are left as written)."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, f"not valid TOML: {e}") from None
    try:
        config = msgspec.convert(data, RunConfig)
    except msgspec.ValidationError as e:
        raise _config_error(path, e) from None
    _check(config, path)
    return config


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read and check a config file; relative ``data``/``tokenizer`` paths become absolute."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "no such file",
                          "pass the path of a TOML config (examples in configs/)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, f"cannot be read ({e})") from None
    config = parse_config(text, path)
    base = path.absolute().parent
    changes = {"data": str(base / Path(config.data).expanduser())}  # an absolute path stays as is
    if config.tokenizer and looks_like_path(config.tokenizer):
        changes["tokenizer"] = str(base / Path(config.tokenizer).expanduser())
    return msgspec.structs.replace(config, **changes)


def looks_like_path(value: str) -> bool:
    """A tokenizer given as a folder rather than a registered name (names have no '/')."""
    return value.startswith((".", "~", "/")) or "/" in value or os.sep in value


def _check(config: RunConfig, path: Path) -> None:
    """Checks that involve more than one key, or the project's own rules."""
    from adapters.devices import DTYPE_CHOICES, is_device_spec

    if not is_device_spec(config.device.lower()):
        raise ConfigError(path, f"key 'device': unknown device {config.device!r}",
                          "use auto, cpu, cuda, cuda:N or mps")
    if config.dtype.lower() not in DTYPE_CHOICES:
        raise ConfigError(path, f"key 'dtype': unknown dtype {config.dtype!r}",
                          "use " + ", ".join(DTYPE_CHOICES))
    if config.output_name:  # model_name may be a checkpoint reference (NAME@step-N): checked on use
        from registry.names import name_problem

        problem = name_problem(config.output_name)
        if problem:
            raise ConfigError(path, f"key 'output_name': invalid model name {config.output_name!r}: "
                              f"{problem}")
    if config.uses_custom_model and config.seq_len > config.model.max_seq_len:
        raise ConfigError(path, f"key 'seq_len': {config.seq_len} is longer than model.max_seq_len "
                          f"({config.model.max_seq_len})", "lower seq_len or raise model.max_seq_len")
    try:
        config.model.transformer_config()
    except (ValueError, TypeError) as e:
        raise ConfigError(path, f"table [model]: {e}") from None
