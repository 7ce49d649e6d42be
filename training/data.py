"""Training data: text files -> token ids -> a training split and a held-out split.

``data`` is a text file, or a folder whose ``*.txt`` and ``*.md`` files (recursively, in
sorted path order) are read. Each file is tokenized with the model's tokenizer and followed
by its end-of-text token, so documents do not run into each other; the concatenation is one
stream of ids. The last ``eval_fraction`` of the stream is held out for evaluation.

Batches follow nanoGPT: ``batch_size`` windows of ``seq_len + 1`` tokens at random offsets
of the training split; the inputs are a window's first ``seq_len`` tokens, the targets its
last ``seq_len``. The offsets of step ``s`` come from a generator seeded with ``(seed, s)``
alone, so a batch depends on nothing but the seed and the step: a resumed run draws exactly
the batches the uninterrupted run would have, and there is no sampler state to save.

Evaluation uses the first ``eval_batches * batch_size`` non-overlapping windows of the
held-out split, the same ones every time, so eval losses along a run (and across runs on
the same data) are comparable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from store.digest import digest_bytes
from training.errors import ConfigError

TEXT_SUFFIXES = (".txt", ".md")
_CHUNK_CHARS = 16_000  # tokenized in pieces: below any tokenizer's model_max_length warning
_PARAGRAPH_END = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class TokenData:
    train: torch.Tensor  # int32 token ids, 1-D
    held_out: torch.Tensor  # int32 token ids, 1-D (may be empty)
    files: int
    digest: str  # BLAKE3 of every token id: the data *as the model sees it* (text and tokenizer)

    @property
    def tokens(self) -> int:
        return self.train.numel() + self.held_out.numel()


def text_files(data: str | Path, where: str) -> list[Path]:
    path = Path(data)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise ConfigError(where, f"key 'data': folder {path} holds no {' or '.join(TEXT_SUFFIXES)} files")
        return files
    raise ConfigError(where, f"key 'data': {path} does not exist",
                      "set data to a text file or a folder of .txt/.md files (relative to the config)")


def _chunks(text: str) -> list[str]:
    """``text`` cut after paragraph ends into pieces of about ``_CHUNK_CHARS`` characters."""
    pieces, start = [], 0
    while len(text) - start > _CHUNK_CHARS:
        cut = None
        for match in _PARAGRAPH_END.finditer(text, start + _CHUNK_CHARS // 2, start + _CHUNK_CHARS):
            cut = match.end()
        cut = cut or start + _CHUNK_CHARS  # no paragraph break: cut anywhere (rare, harmless)
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return [p for p in pieces if p]


def encode(tokenizer, text: str) -> list[int]:
    pieces = _chunks(text)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # the fast path: no special tokens, no length warnings
        return [i for enc in backend.encode_batch(pieces, add_special_tokens=False) for i in enc.ids]
    return [i for ids in tokenizer(pieces, add_special_tokens=False)["input_ids"] for i in ids]


def load_tokens(data: str | Path, tokenizer, *, eval_fraction: float, seq_len: int,
                where: str = "<config>") -> TokenData:
    files = text_files(data, where)
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(where, f"key 'data': cannot read {path} as UTF-8 text ({e})") from None
        ids.extend(encode(tokenizer, text))
        if eos is not None:
            ids.append(eos)
    stream = torch.tensor(ids, dtype=torch.int32)
    held = int(len(ids) * eval_fraction)
    if eval_fraction > 0 and held < seq_len + 1:
        held = 0  # too little to hold out one window: the caller warns that there is no eval loss
    train = stream[: len(ids) - held]
    if train.numel() < seq_len + 1:
        raise ConfigError(where, f"key 'data': {len(ids):,} tokens are too few for seq_len {seq_len} "
                          f"(the training split needs at least {seq_len + 1})", "add text or lower seq_len")
    digest = digest_bytes(memoryview(stream.numpy()).cast("B"))
    return TokenData(train=train, held_out=stream[len(ids) - held:], files=len(files), digest=digest)


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step ``step``'s offsets: a function of (seed, step) only.

    Seeded through a hash because torch's CPU generator keeps only 32 bits of a seed, so
    packing (seed, step) into one integer would make seeds collide.
    """
    mixed = hashlib.blake2b(f"{seed}:{step}".encode(), digest_size=4).digest()
    return torch.Generator().manual_seed(int.from_bytes(mixed, "little"))


def train_batch(data: TokenData, *, step: int, seed: int, batch_size: int,
                seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (B, T) of step ``step``, as int64 on the CPU."""
    high = data.train.numel() - seq_len  # offsets 0 .. high-1 keep seq_len + 1 tokens in range
    offsets = torch.randint(high, (batch_size,), generator=batch_generator(seed, step))
    windows = torch.stack([data.train[o:o + seq_len + 1] for o in offsets.tolist()]).long()
    return windows[:, :-1], windows[:, 1:]


def eval_batches(data: TokenData, *, batch_size: int, seq_len: int,
                 max_batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The held-out split's first windows, in batches (empty when nothing is held out)."""
    count = min(data.held_out.numel() // (seq_len + 1), max_batches * batch_size)
    if count == 0:
        return []
    windows = data.held_out[: count * (seq_len + 1)].view(count, seq_len + 1).long()
    return [(w[:, :-1], w[:, 1:]) for w in windows.split(batch_size)]
