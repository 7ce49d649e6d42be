"""``python main.py generate``: real processes for output and exit codes, CliRunner for the rest."""

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import torch
from click.testing import CliRunner

from main import cli
from registry.ops import get_model, register
from registry.ingest.folder import import_folder
from store.manifest import put_manifest
from training.generate import generate_text

REPO = Path(__file__).resolve().parents[1]


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), "--root", str(root), *args],
                          capture_output=True, text=True, cwd=str(root), env={**os.environ}, timeout=300)


@pytest.fixture
def qwen(workspace, tiny_model):
    import_folder(workspace, tiny_model("qwen2"), name="qwen")
    return workspace


def test_generate_streams_deterministic_text(qwen, root):
    args = ("generate", "qwen", "--prompt", "Ada went to", "--max-new-tokens", "12", "--seed", "4")
    first, second = run(root, *args), run(root, *args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    expected = generate_text(qwen, "qwen", prompt="Ada went to", max_new_tokens=12, seed=4)
    assert first.stdout == expected.text + "\n"
    lines = first.stderr.splitlines()
    assert [line.split()[0] for line in lines] == ["model", "generate"]
    assert "12 tokens" in lines[1]


def test_missing_model_is_one_line(root, workspace):
    result = run(root, "generate", "ghost", "--prompt", "hi")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == ("error: no model named 'ghost' is registered; "
                             "run `python main.py list-models` to see the registered names\n")


def test_unsupported_architecture_is_one_line(qwen, root):
    """A registered model whose architecture no adapter handles (e.g. registered by a newer
    modelstore) is refused by name, with the supported list."""
    _, manifest = get_model(qwen, "qwen")
    other = msgspec.structs.replace(manifest, architecture_type="llama")
    register(qwen, "llama-model", put_manifest(qwen.objects, other), other)
    result = run(root, "generate", "llama-model", "--prompt", "hi")
    assert result.returncode == 1
    assert result.stderr == ("error: unsupported architecture 'llama' (model 'llama-model'); supported: "
                             "modelstore_transformer, qwen2, qwen2_5_vl, qwen2_moe, qwen2_vl, qwen3, qwen3_5, "
                             "qwen3_5_moe, qwen3_5_moe_text, qwen3_5_text, qwen3_moe, qwen3_next, qwen3_vl, "
                             "qwen3_vl_moe\n")


def test_config_file_drives_generation_and_options_override_it(qwen, root, tmp_path):
    config = tmp_path / "gen.toml"
    config.write_text('model_name = "qwen"\nseed = 2\n[generate]\nprompt = "Once"\nmax_new_tokens = 6\n')
    runner = CliRunner()
    from_config = runner.invoke(cli, ["--root", str(root), "generate", "--config", str(config)])
    assert from_config.exit_code == 0, from_config.output
    expected = generate_text(qwen, "qwen", prompt="Once", max_new_tokens=6, seed=2)
    assert from_config.stdout == expected.text + "\n"
    shorter = runner.invoke(cli, ["--root", str(root), "generate", "--config", str(config),
                                  "--max-new-tokens", "2"])
    assert shorter.stdout == generate_text(qwen, "qwen", prompt="Once", max_new_tokens=2, seed=2).text + "\n"


def test_config_with_an_unknown_key_names_it(root, workspace, tmp_path):
    config = tmp_path / "gen.toml"
    config.write_text('model_name = "qwen"\n[generate]\nmax_tokens = 6\n')
    result = CliRunner().invoke(cli, ["--root", str(root), "generate", "--config", str(config)])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {config}: unknown key 'generate.max_tokens'; "
                             "remove it or check its spelling (keys are listed in the README)\n")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_unavailable_device_is_one_line(qwen, root):
    result = CliRunner().invoke(cli, ["--root", str(root), "generate", "qwen", "--prompt", "x",
                                      "--device", "cuda"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: device 'cuda' is not available: ")
    assert result.stderr.count("\n") == 1


def test_bad_option_values_are_usage_errors(qwen, root):
    result = CliRunner().invoke(cli, ["--root", str(root), "generate", "qwen", "--temperature", "-1"])
    assert result.exit_code == 2 and "--temperature" in result.stderr



def test_generate_with_an_image_on_a_vl_model_and_on_a_text_model(workspace, root, tmp_path):
    from tests.fixtures.qwen_family import family_model, tiny_image

    import_folder(workspace, family_model("qwen3_vl", tmp_path / "vl-src"), name="vl")
    import_folder(workspace, family_model("qwen3_next", tmp_path / "text-src"), name="text")
    image = tiny_image(tmp_path / "cat.png")
    ok = run(root, "generate", "vl", "--prompt", "What is it?", "--image", str(image),
             "--max-new-tokens", "4", "--temperature", "0")
    assert ok.returncode == 0, ok.stderr
    expected = generate_text(workspace, "vl", prompt="What is it?", image=image, max_new_tokens=4, temperature=0)
    assert ok.stdout == expected.text + "\n"
    refused = run(root, "generate", "text", "--prompt", "hi", "--image", str(image))
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        "error: model 'text' (qwen3_next) is a text model and takes no image; "
        "drop --image, or pick a vision-language model"]


def test_list_models_filters_by_a_new_family_member(workspace, root, tmp_path):
    import json

    from tests.fixtures.qwen_family import family_model

    import_folder(workspace, family_model("qwen3_5", tmp_path / "a"), name="a")
    import_folder(workspace, family_model("qwen2_vl", tmp_path / "b"), name="b")
    out = run(root, "list-models", "--architecture", "qwen3_5", "--json")
    assert out.returncode == 0, out.stderr
    assert [m["model_name"] for m in json.loads(out.stdout)] == ["a"]
