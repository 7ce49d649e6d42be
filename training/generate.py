"""Text generation: sample a continuation of a prompt, streaming it as it is produced.

One sampler for every architecture: the adapter's ``Decoder`` gives next-token logits (with
a key/value cache for transformers models, re-running the context for the custom
Transformer), and sampling happens here, on the CPU in float32, with a ``torch.Generator``
seeded from ``seed``. So a given model, prompt, settings and seed always give the same
text on the same device, and the caller's global RNG is neither used nor disturbed.

``temperature`` 0 is greedy decoding; ``top_k`` 0 samples from the whole vocabulary.
Generation stops at ``max_new_tokens`` or at an end-of-text token (the tokenizer's eos,
the config's ``eos_token_id`` and generation_config.json's, which lists chat models' turn
ends too); the stop token itself is not printed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from adapters.base import Adapter
from registry.report import NullReporter, Reporter, human_bytes
from registry.workspace import Workspace
from store.errors import UsageError
from training.config import GenerateSettings, RunConfig, load_config
from training.threads import set_cpu_threads

TextSink = Callable[[str], None]


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_k: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise UsageError(f"temperature must be >= 0, got {self.temperature}", "use 0 for greedy decoding")
        if self.top_k < 0:
            raise UsageError(f"top_k must be >= 0, got {self.top_k}", "use 0 to sample from every token")


@dataclass
class Generation:
    text: str
    token_ids: list[int]  # the generated ids (without the prompt and the stop token)
    prompt_tokens: int
    stopped: str  # "eos" or "length"
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return len(self.token_ids) / self.seconds if self.seconds > 0 else 0.0


def sample_next(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    """One token id from next-token logits (V,)."""
    logits = logits.detach().float().cpu()
    if sampling.temperature == 0:
        return int(torch.argmax(logits))
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.numel():
        kth = torch.topk(logits, sampling.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))  # keep only the k likeliest
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


class TextStream:
    """Turns token ids into text as they arrive, without ever printing half a character.

    Byte-level tokenizers split multi-byte characters across tokens; until the rest
    arrives, decoding ends in U+FFFD, so that text is held back.
    """

    def __init__(self, tokenizer, on_text: TextSink | None):
        self.tokenizer, self.on_text = tokenizer, on_text
        self.ids: list[int] = []
        self.sent = 0

    def push(self, token_id: int) -> None:
        self.ids.append(token_id)
        text = self.text()
        if not text.endswith("\ufffd"):
            self._send(text)

    def close(self) -> str:
        text = self.text()
        self._send(text)
        return text

    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def _send(self, text: str) -> None:
        if len(text) > self.sent:
            if self.on_text is not None:
                self.on_text(text[self.sent:])
            self.sent = len(text)


def generate(adapter: Adapter, model: nn.Module, tokenizer, prompt: str, sampling: Sampling, *,
             stop_ids: set[int] | None = None, on_text: TextSink | None = None,
             inputs: dict[str, torch.Tensor] | None = None) -> Generation:
    """Sample up to ``sampling.max_new_tokens`` tokens after ``prompt``; ``on_text`` gets
    each piece of text as soon as it is complete. ``inputs``: the prompt as model inputs
    instead (``input_ids`` and, for an image, its pixels and grid; see ``image_prompt``)."""
    inputs = dict(inputs or {})
    ids = inputs.pop("input_ids")[0].tolist() if inputs else tokenizer.encode(prompt) if prompt else []
    if not ids:  # nothing to condition on: start from the start (or end) of text token
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise UsageError("the prompt is empty and the tokenizer has no start or end-of-text token",
                             "pass a non-empty --prompt")
        ids = [start]
    stop_ids = stop_ids if stop_ids is not None else {tokenizer.eos_token_id} - {None}
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(sampling.seed)
    decoder = adapter.decoder(model)
    stream = TextStream(tokenizer, on_text)
    stopped = "length"
    started = time.perf_counter()
    with torch.inference_mode():
        first = {k: v.to(device) for k, v in inputs.items() if k != "attention_mask"}
        logits = decoder.step(torch.tensor([ids], device=device), **first)
        for _ in range(sampling.max_new_tokens):
            token = sample_next(logits, sampling, generator)
            if token in stop_ids:
                stopped = "eos"
                break
            stream.push(token)
            if len(stream.ids) == sampling.max_new_tokens:
                break
            logits = decoder.step(torch.tensor([[token]], device=device))
    text = stream.close()
    return Generation(text=text, token_ids=stream.ids, prompt_tokens=len(ids), stopped=stopped,
                      seconds=time.perf_counter() - started)


def stop_token_ids(workspace: Workspace, loaded) -> set[int]:
    """End-of-text ids from the tokenizer, the model's config and generation_config.json."""
    ids: set[int] = set()

    def add(value) -> None:
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, int) and not isinstance(v, bool):
                ids.add(v)

    add(loaded.tokenizer.eos_token_id)
    add(getattr(loaded.model.config, "eos_token_id", None))
    entry = loaded.manifest.files.get("generation_config.json")
    if entry is not None:
        try:
            add(json.loads(workspace.objects.read_bytes(entry.digest)).get("eos_token_id"))
        except (ValueError, AttributeError):
            pass  # a malformed generation config only loses its extra stop tokens
    return ids


def image_prompt(workspace: Workspace, loaded, prompt: str, image: str | Path) -> dict[str, torch.Tensor]:
    """``prompt`` about the image at ``image`` as model inputs, through the model's processor
    files and chat template (adapters/vision.py); one clear error for a text-only model."""
    from adapters.blobs import files_folder
    from adapters.vision import open_image

    if not loaded.adapter.takes_images(loaded.model):
        raise UsageError(f"model {loaded.name!r} ({loaded.manifest.architecture_type}) is a text model "
                         "and takes no image", "drop --image, or pick a vision-language model")
    picture = open_image(image)
    with files_folder(workspace.objects, loaded.manifest) as folder:
        return loaded.adapter.image_inputs(loaded.model, folder, loaded.tokenizer, prompt, picture)


def dtype_name(dtype: object) -> str:
    """``torch.bfloat16`` as ``bfloat16``."""
    return str(dtype).removeprefix("torch.")


def generate_text(workspace: Workspace, name: str | None = None, *,
                  config: str | Path | RunConfig | None = None,
                  prompt: str | None = None, max_new_tokens: int | None = None,
                  temperature: float | None = None, top_k: int | None = None, seed: int | None = None,
                  device: str | None = None, dtype: str | None = None, on_text: TextSink | None = None,
                  image: str | Path | None = None, reporter: Reporter | None = None,
                  tokenizer: str | None = None) -> Generation:
    """``modelstore generate``: explicit arguments win over the config file, which wins
    over the defaults. The model is ``name``, else the config's ``model_name``, else its
    ``output_name`` (the model a from-scratch run registers). ``tokenizer``: a folder or a
    registered model's name, for a model imported without one (default: the config's, else
    the model's own)."""
    from training.models import load_model

    reporter = reporter or NullReporter()
    if isinstance(config, RunConfig):
        run = config
    else:
        run = load_config(config) if config is not None else RunConfig()
    name = name or run.model_name or run.output_name
    if not name:
        raise UsageError("no model to generate with",
                         "pass a model NAME, or set model_name (or output_name) in the config")
    settings: GenerateSettings = run.generate
    prompt = prompt if prompt is not None else settings.prompt  # empty: unconditional sampling
    sampling = Sampling(
        max_new_tokens=max_new_tokens if max_new_tokens is not None else settings.max_new_tokens,
        temperature=temperature if temperature is not None else settings.temperature,
        top_k=top_k if top_k is not None else settings.top_k,
        seed=seed if seed is not None else run.seed,
    )
    loaded = load_model(workspace, name, device=device or run.device, dtype=dtype or run.dtype,
                        tokenizer=tokenizer if tokenizer else run.tokenizer)
    set_cpu_threads(loaded.device, loaded.manifest.params)
    inputs = image_prompt(workspace, loaded, prompt, image) if image is not None else None
    params = loaded.manifest.params
    reporter.status("model", f"{name} ({loaded.manifest.architecture_type}, {params:,} parameters, "
                    f"{human_bytes(loaded.manifest.tensor_bytes)}, {dtype_name(next(loaded.model.parameters()).dtype)} "
                    f"on {loaded.device})")
    result = generate(loaded.adapter, loaded.model, loaded.tokenizer, prompt, sampling,
                      stop_ids=stop_token_ids(workspace, loaded), on_text=on_text, inputs=inputs)
    reporter.status("generate", f"{len(result.token_ids)} tokens in {result.seconds:.2f} s "
                    f"({result.tokens_per_second:.1f} tokens/s, stopped at {result.stopped})")
    return result
