"""Generation (training/generate.py): sampling, streaming, determinism, model selection."""

import pytest
import torch

from adapters import get_adapter
from registry.ingest.folder import import_folder
from registry.report import RecordingReporter
from registry.errors import ModelNotFoundError
from store.errors import UsageError
from training.errors import TokenizerError
from training.config import parse_config
from training.generate import Sampling, TextStream, generate, generate_text, sample_next
from training.models import create_custom_model, load_model

SCRATCH = "seed = 1\n[model]\nn_layer = 2\nn_embd = 32\n"


@pytest.fixture
def qwen(workspace, tiny_model):
    import_folder(workspace, tiny_model("qwen2"), name="qwen")
    return workspace


def test_greedy_and_top_1_pick_the_likeliest_token():
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    generator = torch.Generator().manual_seed(0)
    assert sample_next(logits, Sampling(temperature=0.0), generator) == 1
    assert all(sample_next(logits, Sampling(temperature=5.0, top_k=1), generator) == 1 for _ in range(20))


def test_top_k_restricts_sampling_and_a_seed_fixes_it():
    logits = torch.tensor([5.0, 4.0, 0.0, 0.0, 0.0, 0.0])
    draws = lambda seed: [sample_next(logits, Sampling(temperature=10.0, top_k=2), generator)  # noqa: E731
                          for generator in [torch.Generator().manual_seed(seed)] for _ in range(200)]
    assert set(draws(0)) == {0, 1}  # a high temperature would otherwise reach every token
    assert draws(0) == draws(0) and draws(0) != draws(1)


def test_stream_never_emits_half_a_character(qwen):
    tokenizer = load_model(qwen, "qwen").tokenizer
    ids = tokenizer.encode("né 🙂")
    assert len(ids) > 3  # the emoji takes several byte tokens
    pieces: list[str] = []
    stream = TextStream(tokenizer, pieces.append)
    for token in ids:
        stream.push(token)
    assert stream.close() == "né 🙂"
    assert "".join(pieces) == "né 🙂"
    assert not any("\ufffd" in piece for piece in pieces)


@pytest.mark.parametrize("model", ["qwen", "scratch"])
def test_same_seed_same_text_other_seed_other_text(qwen, model):
    if model == "scratch":
        create_custom_model(qwen, "scratch", parse_config(SCRATCH))
    pieces: list[str] = []
    first = generate_text(qwen, model, prompt="Ada went to", max_new_tokens=24, seed=5, on_text=pieces.append)
    again = generate_text(qwen, model, prompt="Ada went to", max_new_tokens=24, seed=5)
    other = generate_text(qwen, model, prompt="Ada went to", max_new_tokens=24, seed=6)
    assert first.token_ids == again.token_ids and first.text == again.text
    assert other.token_ids != first.token_ids
    assert len(first.token_ids) == 24 and first.stopped == "length"
    assert "".join(pieces) == first.text  # streamed piece by piece, nothing lost
    assert len(pieces) > 1


def test_generation_does_not_touch_the_global_rng(qwen):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate_text(qwen, "qwen", prompt="x", max_new_tokens=5)
    assert torch.equal(torch.rand(3), expected)


def test_stops_at_an_end_of_text_token(qwen):
    loaded = load_model(qwen, "qwen")
    greedy = Sampling(temperature=0.0, max_new_tokens=10)
    first = generate(loaded.adapter, loaded.model, loaded.tokenizer, "Ada", greedy).token_ids[0]
    result = generate(loaded.adapter, loaded.model, loaded.tokenizer, "Ada", greedy, stop_ids={first})
    assert result.stopped == "eos" and result.token_ids == [] and result.text == ""


def test_empty_prompt_starts_from_the_end_of_text_token(qwen):
    result = generate_text(qwen, "qwen", prompt="", max_new_tokens=4, seed=0)
    assert result.prompt_tokens == 1 and len(result.token_ids) == 4


def test_config_selects_model_and_settings_and_arguments_win(qwen, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('model_name = "qwen"\nseed = 9\n[generate]\nprompt = "Ada"\nmax_new_tokens = 7\n'
                      'temperature = 0.0\n')
    reporter = RecordingReporter()
    from_config = generate_text(qwen, config=config, reporter=reporter)
    assert len(from_config.token_ids) == 7
    greedy = generate_text(qwen, "qwen", prompt="Ada", max_new_tokens=7, temperature=0.0)
    assert from_config.token_ids == greedy.token_ids
    assert [c for c, _ in reporter.lines] == ["model", "generate"]
    overridden = generate_text(qwen, config=config, max_new_tokens=3)
    assert overridden.token_ids == greedy.token_ids[:3]


def test_output_name_is_the_model_of_a_from_scratch_config(qwen):
    create_custom_model(qwen, "scratch", parse_config(SCRATCH))
    config = parse_config('output_name = "scratch"\n[generate]\nprompt = "Ada"\nmax_new_tokens = 3\n')
    assert len(generate_text(qwen, config=config).token_ids) == 3
    with pytest.raises(UsageError, match="no model to generate with"):
        generate_text(qwen, config=parse_config(""), prompt="x")


def test_tokenizer_override_by_name_and_folder(qwen, tiny_model):
    small = tiny_model("qwen2", name="small", vocab_size=300)
    import_folder(qwen, small, name="small")
    create_custom_model(qwen, "scratch", parse_config(SCRATCH))
    own = load_model(qwen, "scratch").tokenizer
    by_name = load_model(qwen, "scratch", tokenizer="small").tokenizer
    by_folder = load_model(qwen, "scratch", tokenizer=str(small)).tokenizer
    assert len(own) == 512 and len(by_name) == len(by_folder) == 300
    text = "Ada went to the park with her friends."
    assert by_name.encode(text) == by_folder.encode(text) != own.encode(text)


def test_tokenizer_errors(qwen, tmp_path, tiny_model):
    with pytest.raises(TokenizerError, match="does not exist"):
        load_model(qwen, "qwen", tokenizer=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="has no tokenizer files"):
        load_model(qwen, "qwen", tokenizer=str(tmp_path / "empty"))
    with pytest.raises(TokenizerError, match="no model named 'nope'"):
        load_model(qwen, "qwen", tokenizer="nope")
    import_folder(qwen, tiny_model("qwen2", name="big", vocab_size=1024), name="big")
    with pytest.raises(TokenizerError, match="the tokenizer has 1024 tokens but model 'qwen' has only 512"):
        load_model(qwen, "qwen", tokenizer="big")


def test_missing_model_is_the_registry_error(workspace):
    with pytest.raises(ModelNotFoundError, match="no model named 'ghost' is registered"):
        generate_text(workspace, "ghost", prompt="x")


def test_custom_model_context_is_cropped(qwen):
    """Prompts longer than max_seq_len keep their most recent tokens, as nanoGPT does."""
    create_custom_model(qwen, "short", parse_config("seq_len = 16\n[model]\nn_layer = 1\nn_embd = 32\n"
                                                      "max_seq_len = 16\n"))
    result = generate_text(qwen, "short", prompt="word " * 40, max_new_tokens=8, seed=0)
    assert result.prompt_tokens > 16 and len(result.token_ids) == 8
    assert get_adapter("modelstore_transformer").context_length(load_model(qwen, "short").model) == 16


def test_an_unregistered_version_loads_with_its_stored_tokenizer(qwen):
    """A checkpoint has a manifest but no name and no view: model and tokenizer load from blobs."""
    from registry.ops import get_model
    from training.models import load_version, store_model

    base = load_model(qwen, "qwen")
    _, manifest = get_model(qwen, "qwen")
    with torch.no_grad():
        base.model.get_parameter("model.norm.weight").mul_(0.5)
    stored = store_model(qwen, base.adapter, base.model, files=manifest.files, source="finetuned",
                         model_id="qwen", parents=[base.entry.manifest])
    assert stored.stats.written == 1  # only the changed tensor is new
    version = load_version(qwen, stored.manifest, "qwen@step-1")
    assert version.entry is None and len(version.tokenizer) == 512
    assert torch.equal(version.model.get_parameter("model.norm.weight"),
                       base.model.get_parameter("model.norm.weight"))
    result = generate(version.adapter, version.model, version.tokenizer, "Ada", Sampling(max_new_tokens=3))
    assert len(result.token_ids) == 3
