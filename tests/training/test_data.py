"""Training data: files to tokens, the held-out split, batches that depend on (seed, step) only."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.tiny import train_tokenizer
from training.errors import ConfigError
from training.config import PROJECT_CORPUS
from training.data import _chunks, encode, eval_batches, load_tokens, train_batch


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(train_tokenizer(tmp_path_factory.mktemp("tok")))


def test_the_corpus_splits_into_train_and_held_out(tokenizer):
    data = load_tokens(PROJECT_CORPUS, tokenizer, eval_fraction=0.05, seq_len=64)
    assert data.files == 1 and data.train.dtype == torch.int32
    assert data.held_out.numel() == int(data.tokens * 0.05)
    assert int(data.train.max()) < len(tokenizer)
    assert data.held_out[-1] == tokenizer.eos_token_id  # each file ends with end-of-text
    again = load_tokens(PROJECT_CORPUS, tokenizer, eval_fraction=0.05, seq_len=64)
    assert again.digest == data.digest


def test_chunked_encoding_matches_encoding_the_whole_text(tokenizer):
    text = PROJECT_CORPUS.read_text()[:60_000]
    assert len(_chunks(text)) > 3 and "".join(_chunks(text)) == text
    assert encode(tokenizer, text) == tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids


def test_a_folder_reads_its_text_files_in_order(tokenizer, tmp_path):
    (tmp_path / "b.md").write_text("Rosa went home.")
    (tmp_path / "a.txt").write_text("Ada went out.")
    (tmp_path / "skip.json").write_text("{}")
    data = load_tokens(tmp_path, tokenizer, eval_fraction=0.0, seq_len=2)
    eos = tokenizer.eos_token_id
    expected = tokenizer.encode("Ada went out.") + [eos] + tokenizer.encode("Rosa went home.") + [eos]
    assert data.files == 2 and data.train.tolist() == expected and data.held_out.numel() == 0


def test_batches_depend_on_seed_and_step_only(tokenizer):
    data = load_tokens(PROJECT_CORPUS, tokenizer, eval_fraction=0.05, seq_len=16)
    x, y = train_batch(data, step=3, seed=0, batch_size=4, seq_len=16)
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    torch.manual_seed(99)  # the global RNG plays no part
    again, _ = train_batch(data, step=3, seed=0, batch_size=4, seq_len=16)
    assert torch.equal(x, again)
    assert not torch.equal(x, train_batch(data, step=4, seed=0, batch_size=4, seq_len=16)[0])
    assert not torch.equal(x, train_batch(data, step=3, seed=1, batch_size=4, seq_len=16)[0])


def test_eval_batches_are_the_held_out_splits_first_windows(tokenizer):
    data = load_tokens(PROJECT_CORPUS, tokenizer, eval_fraction=0.05, seq_len=16)
    batches = eval_batches(data, batch_size=4, seq_len=16, max_batches=3)
    assert len(batches) == 3 and all(x.shape == (4, 16) for x, _ in batches)
    assert batches[0][0][0].tolist() == data.held_out[:16].tolist()
    again = eval_batches(data, batch_size=4, seq_len=16, max_batches=3)
    assert again[2][1].tolist() == batches[2][1].tolist()


@pytest.mark.parametrize("setup, message", [
    (lambda p: p / "missing.txt", r"run.toml: key 'data': .*missing.txt does not exist"),
    (lambda p: p, r"run.toml: key 'data': folder .* holds no .txt or .md files"),
])
def test_bad_data_paths_name_the_key(tokenizer, tmp_path, setup, message):
    with pytest.raises(ConfigError, match=message):
        load_tokens(setup(tmp_path), tokenizer, eval_fraction=0.0, seq_len=8, where="run.toml")


def test_too_little_to_hold_out_leaves_no_held_out_split(tokenizer, tmp_path):
    (tmp_path / "a.txt").write_text("Ada went to the market. " * 20)
    data = load_tokens(tmp_path / "a.txt", tokenizer, eval_fraction=0.05, seq_len=16)
    assert data.held_out.numel() == 0 and eval_batches(data, batch_size=2, seq_len=16, max_batches=2) == []
