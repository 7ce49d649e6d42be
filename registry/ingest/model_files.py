"""Which files of a model folder or Hub repo are imported, and how.

One rule for local folders and Hub repos alike:
- ``*.safetensors`` weights are split into per-tensor blobs (with a
  ``model.safetensors.index.json``, exactly the shards it names);
- config, tokenizer, generation, processor (image and video preprocessor configs),
  chat-template, license and README files become file blobs;
- pickle weights (``*.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``, ...) are never read: refused
  when they are the only weights, skipped (and said so) otherwise;
- remote code (``*.py``) is skipped: modelstore never runs it;
- anything else (subfolders, hidden files, other formats) is skipped and listed.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field

from registry.views import GENERATED_FILES, file_path_problem
from store.errors import PickleWeightsError, SafetensorsError, SourceError

CONFIG_FILE = "config.json"
WEIGHTS_SUFFIX = ".safetensors"
INDEX_SUFFIX = ".safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
FILE_PATTERNS = ("*.json", "*.txt", "*.model", "*.jinja", "*.md", "*.tiktoken", "LICENSE*", "NOTICE*")
TOKENIZER_PATTERNS = ("tokenizer*", "vocab*", "merges.txt", "special_tokens_map.json",
                      "added_tokens.json", "chat_template*")
# What AutoProcessor reads beside the tokenizer (vision-language models): kept like any file.
PROCESSOR_PATTERNS = ("preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json")


@dataclass
class FileSelection:
    weights: list[str] = field(default_factory=list)  # safetensors files, in order
    index: str | None = None  # the sharded checkpoint's index, if any
    files: list[str] = field(default_factory=list)  # everything stored verbatim
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why

    def component(self, path: str) -> str:
        """weights, config, tokenizer, processor or other: how status lines group files."""
        if path in self.weights or path == self.index:
            return "weights"
        name = path.rsplit("/", 1)[-1]
        if name in (CONFIG_FILE, "generation_config.json"):
            return "config"
        if any(fnmatch.fnmatch(name, p) for p in TOKENIZER_PATTERNS):
            return "tokenizer"
        if name in PROCESSOR_PATTERNS:
            return "processor"
        return "other"


def select_files(paths: list[str], where: str) -> FileSelection:
    """Sort a folder's (or repo's) relative file paths into what is imported and what is not."""
    sel = FileSelection()
    pickles = []
    for path in sorted(paths):
        name = path.rsplit("/", 1)[-1]
        lower = name.lower()
        if "/" in path:
            sel.skipped[path] = "in a subfolder"
        elif name.startswith("."):
            sel.skipped[path] = "hidden file"
        elif lower.endswith(PICKLE_SUFFIXES):
            pickles.append(path)
            sel.skipped[path] = "pickle weights are never loaded"
        elif lower.endswith(".py"):
            sel.skipped[path] = "remote code is never run"
        elif lower.endswith(INDEX_SUFFIX):
            if sel.index is not None:
                raise SourceError(where, f"{where} has two checkpoint indexes: {sel.index} and {path}",
                                  "keep only one of them")
            sel.index = path
        elif lower.endswith(WEIGHTS_SUFFIX):
            sel.weights.append(path)
        elif name in GENERATED_FILES:
            sel.skipped[path] = "the view generates this file"
        elif any(fnmatch.fnmatch(name, p) for p in FILE_PATTERNS):
            problem = file_path_problem(path)
            if problem:
                sel.skipped[path] = f"unusable file name: {problem}"
            else:
                sel.files.append(path)
        else:
            sel.skipped[path] = "not a model, config or tokenizer file"
    if sel.index is None:
        _check_shard_series(sel.weights, where)
    if CONFIG_FILE not in sel.files:
        raise SourceError(where, f"{where} has no {CONFIG_FILE}",
                          "point at a Hugging Face-format model folder (with config.json)")
    if not sel.weights:
        if pickles:
            raise PickleWeightsError(f"{where}/{pickles[0]}", " and no safetensors weights")
        raise SourceError(where, f"{where} has no *.safetensors weights",
                          "point at a folder with safetensors weights")
    return sel


_SHARD = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.safetensors$")


def _check_shard_series(weights: list[str], where: str) -> None:
    """Without an index, shards named ``*-0000i-of-0000N`` must all be there."""
    series: dict[tuple[str, int], set[int]] = {}
    for path in weights:
        m = _SHARD.match(path)
        if m:
            series.setdefault((m["stem"], int(m["total"])), set()).add(int(m["part"]))
    for (stem, total), parts in sorted(series.items()):
        missing = sorted(set(range(1, total + 1)) - parts)
        if missing:
            name = f"{stem}-{missing[0]:05d}-of-{total:05d}.safetensors"
            raise SourceError(where, f"{where} has {len(parts)} of the {total} shards of {stem} and no index: "
                                     f"{name} is missing", "the download is incomplete; fetch the missing shards")


def index_shards(index_bytes: bytes) -> list[str]:
    """The shard files a checkpoint index names ([] for a malformed one: ``apply_index`` says why)."""
    try:
        weight_map = json.loads(index_bytes).get("weight_map")
    except (ValueError, AttributeError):
        return []
    if not isinstance(weight_map, dict):
        return []
    return sorted({v for v in weight_map.values() if isinstance(v, str)})


def apply_index(sel: FileSelection, index_bytes: bytes, where: str) -> dict[str, str]:
    """Restrict the weights to the shards the index names; return its tensor -> shard map."""
    try:
        index = json.loads(index_bytes)
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
        ):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise SafetensorsError(f"{where}/{sel.index}", "the checkpoint index has no valid weight_map") from None
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if s not in sel.weights]
    if missing:
        raise SourceError(where, f"{where}: the checkpoint index names missing shard {missing[0]!r}",
                          "the download is incomplete; fetch the missing shards")
    for extra in sel.weights:
        if extra not in shards:
            sel.skipped[extra] = "not named by the checkpoint index"
    sel.weights = shards
    return weight_map


def read_config(data: bytes, where: str) -> dict:
    try:
        config = json.loads(data)
    except ValueError as e:
        raise SourceError(where, f"{where}/{CONFIG_FILE} is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise SourceError(where, f"{where}/{CONFIG_FILE} is not a JSON object")
    return config


def license_from_readme(text: str) -> str | None:
    """The ``license:`` of a model card's YAML front matter, if it has one."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, sep, value = line.partition(":")
        if sep and key.strip() == "license" and value.strip():
            return value.strip().strip("'\"")
    return None
