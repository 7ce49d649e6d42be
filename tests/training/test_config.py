"""Run config files (training/config.py): typed, strict, one error line naming the key."""

from pathlib import Path

import pytest

from training.errors import ConfigError
from training.config import PROJECT_CORPUS, RunConfig, load_config, parse_config

EXAMPLE = """
model_name = "qwen-tiny"
tokenizer = ""
data = "corpus.txt"
seq_len = 64
batch_size = 8
lr = 1e-3
max_steps = 200
save_every = 50
eval_every = 25
seed = 7
freeze = ["model.embed_tokens.*", "model.layers.[0-5].*"]
output_name = "qwen-tiny-ft"
device = "cpu"
dtype = "float32"

[model]
n_layer = 2
n_head = 4
n_kv_head = 2
n_embd = 64
max_seq_len = 128

[generate]
prompt = "Once upon a time"
max_new_tokens = 32
temperature = 0.0
top_k = 0
"""


def test_every_key_is_read():
    config = parse_config(EXAMPLE)
    assert config.model_name == "qwen-tiny" and not config.uses_custom_model
    assert (config.seq_len, config.batch_size, config.lr, config.max_steps) == (64, 8, 1e-3, 200)
    assert (config.save_every, config.eval_every, config.seed) == (50, 25, 7)
    assert config.freeze == ["model.embed_tokens.*", "model.layers.[0-5].*"]
    assert (config.output_name, config.device, config.dtype) == ("qwen-tiny-ft", "cpu", "float32")
    assert (config.model.n_layer, config.model.n_kv_head, config.model.max_seq_len) == (2, 2, 128)
    assert config.generate.prompt == "Once upon a time" and config.generate.temperature == 0.0


def test_empty_file_is_the_custom_transformer_with_defaults():
    config = parse_config("")
    assert config == RunConfig() and config.uses_custom_model
    assert config.data == str(PROJECT_CORPUS)
    shape = config.model.transformer_config(eos_token_id=509)
    assert (shape.n_layer, shape.n_embd, shape.vocab_size, shape.eos_token_id) == (4, 128, 512, 509)


@pytest.mark.parametrize("text, message", [
    ("seq_lenn = 3", "run.toml: unknown key 'seq_lenn'"),
    ("[model]\nn_layers = 3", "run.toml: unknown key 'model.n_layers'"),
    ("[generate]\ntopk = 3", "run.toml: unknown key 'generate.topk'"),
    ("[optimizer]\nlr = 3", "run.toml: unknown key 'optimizer'"),
])
def test_unknown_keys_are_named(text, message):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "run.toml")
    assert str(info.value).startswith(message + ";")
    assert info.value.exit_code == 2


@pytest.mark.parametrize("text, message", [
    ("seq_len = 1.5", "key 'seq_len': expected int, got float"),
    ("seq_len = 0", "key 'seq_len': expected int >= 1"),
    ("lr = \"fast\"", "key 'lr': expected float, got str"),
    ("freeze = \"model.*\"", "key 'freeze': expected an array, got str"),
    ("freeze = [1]", "key 'freeze[0]': expected str, got int"),
    ("model = 3", "key 'model': expected a table, got int"),
    ("[generate]\ntemperature = -1.0", "key 'generate.temperature': expected float >= 0.0"),
    ("device = \"tpu\"", "key 'device': unknown device 'tpu'"),
    ("dtype = \"int8\"", "key 'dtype': unknown dtype 'int8'"),
    ("output_name = \"a/b\"", "key 'output_name': invalid model name 'a/b'"),
    ("seq_len = 512", "key 'seq_len': 512 is longer than model.max_seq_len (256)"),
    ("[model]\nn_embd = 100\nn_head = 3", "table [model]: n_embd (100) must be a multiple of n_head (3)"),
    ("seq_len = ", "not valid TOML"),
])
def test_bad_values_name_the_key(text, message):
    with pytest.raises(ConfigError, match="^run.toml: " + _escape(message)):
        parse_config(text, "run.toml")


def test_seq_len_is_bounded_by_the_custom_model_only():
    assert parse_config('model_name = "q"\nseq_len = 2048').seq_len == 2048


def test_relative_paths_are_resolved_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "run.toml").write_text('data = "text/corpus.txt"\ntokenizer = "./tok"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config("runs/run.toml")
    assert config.data == str(folder / "text" / "corpus.txt")
    assert config.tokenizer == str(folder / "tok")
    (folder / "named.toml").write_text('tokenizer = "qwen-tiny"\n')
    assert load_config(folder / "named.toml").tokenizer == "qwen-tiny"  # a registered name


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: no such file; pass the path of a TOML config"):
        load_config(tmp_path / "nope.toml")


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_example_configs_parse():
    """Every example under configs/ is a valid config."""
    paths = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))
    assert paths
    for path in paths:
        assert isinstance(load_config(path), RunConfig)
