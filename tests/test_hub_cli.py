"""``python main.py import-model`` from the Hub: a real process, HF_ENDPOINT, bars, prompts, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import app as cli_app
import main
from tests.hub.fixtures import hub_server  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
REPO = "Qwen/Tiny"


def main_py(*args: str, root: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI as a user would: the Hub is found through HF_ENDPOINT (set by hub_server)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "--root", str(root), *args], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)


def one_error_line(stderr: str) -> str:
    """The error: one line, the last one (status lines of the steps done may come before it)."""
    lines = stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], stderr
    assert "Traceback" not in stderr, stderr
    return lines[-1]


def test_import_from_the_hub_end_to_end(hub_server, tiny_model, root):
    commit = hub_server.add_repo(REPO, tiny_model(), card_license="apache-2.0")
    # TQDM_POSITION=-1 makes huggingface_hub draw its bars although stderr is a pipe here.
    result = main_py("import-model", "https://huggingface.co/Qwen/Tiny", "--yes", root=root,
                     env={"TQDM_POSITION": "-1"})
    assert result.returncode == 0, result.stderr
    assert 'use it in a config as: model_name = "Tiny"' in result.stdout
    assert f"from Qwen/Tiny at commit {commit} (revision main), license: apache-2.0" in result.stdout
    bar = [line for line in result.stderr.replace("\r", "\n").splitlines() if "model.safetensors" in line
           and "100%" in line]
    assert bar and "B/s" in bar[-1] and "<" in bar[-1]  # percentage, size, speed, time left
    for line in ("license    apache-2.0, from the model card; acknowledged with --yes", "  weights ",
                 "  config ", "  tokenizer ", "finite logits"):
        assert line in result.stderr
    info = main_py("model-info", "Tiny", "--json", root=root)
    as_json = json.loads(info.stdout)
    assert as_json["source"] == "huggingface" and as_json["license"] == "apache-2.0"
    assert as_json["origin"] == f"{hub_server.endpoint}/Qwen/Tiny at {commit} (asked: main)"


def test_the_importing_process_never_imports_torch(hub_server, tiny_model, root):
    """The load check runs in a worker process: the CLI itself stays small and exits fast."""
    hub_server.add_repo(REPO, tiny_model(), card_license="apache-2.0")
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['main.py', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe, "--root", str(root), "import-model", REPO, "--yes"],
                            cwd=ROOT, env=os.environ, capture_output=True, text=True, timeout=300)
    assert "finite logits" in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "NO-TORCH"


def test_license_needs_yes_without_a_terminal(hub_server, tiny_model, root):
    hub_server.add_repo(REPO, tiny_model(), card_license="apache-2.0")
    result = main_py("import-model", REPO, root=root)
    assert result.returncode == 2
    assert one_error_line(result.stderr) == (
        "error: Qwen/Tiny is published under the license 'apache-2.0', which must be acknowledged before "
        "import; pass --yes to acknowledge it (or run the command in a terminal to be asked)")
    assert hub_server.requests.file_requests("*.safetensors", method="*") == []
    assert not (root / "models").exists()


def test_gated_and_unsupported_are_one_line_errors(hub_server, tiny_model, root):
    folder = tiny_model()
    hub_server.add_repo(REPO, folder, gated=True, token="hf_granted")
    gated = main_py("import-model", REPO, "--yes", root=root)
    assert gated.returncode == 1
    assert one_error_line(gated.stderr).startswith("error: repo 'Qwen/Tiny' is gated: downloading it needs a "
                                                   "token with access; accept its conditions on ")
    config = json.loads((folder / "config.json").read_text())
    hub_server.add_repo("org/llama", {**{p.name: p for p in folder.iterdir()},
                                      "config.json": json.dumps({**config, "model_type": "llama"})})
    unsupported = main_py("import-model", "org/llama", "--yes", root=root)
    assert unsupported.returncode == 1
    commit = hub_server.repos["org/llama"].branches["main"]
    assert one_error_line(unsupported.stderr) == (f"error: unsupported architecture 'llama' in org/llama@"
                                                  f"{commit[:12]}/config.json; supported: modelstore_transformer, "
                                                  "qwen2, qwen2_5_vl, qwen2_moe, qwen2_vl, qwen3, qwen3_5, "
                                                  "qwen3_5_moe, qwen3_5_moe_text, qwen3_5_text, qwen3_moe, "
                                                  "qwen3_next, qwen3_vl, qwen3_vl_moe")


@pytest.fixture
def terminal(monkeypatch, root):
    """The CLI in-process, as if a terminal were attached (prompts enabled)."""
    monkeypatch.setattr(cli_app, "interactive", lambda: True)
    runner = CliRunner()
    return lambda *args, input: runner.invoke(main.cli, ["--root", str(root), *args], input=input,
                                              catch_exceptions=False)


def test_terminal_prompts_for_gated_token_and_license(hub_server, tiny_model, terminal):
    card = {"license": "other", "license_name": "tiny-research", "license_link": "LICENSE"}
    hub_server.add_repo(REPO, tiny_model(), gated=True, token="hf_granted", card_data=card)
    result = terminal("import-model", REPO, input="hf_granted\ny\n")
    assert result.exit_code == 0, result.output
    assert "Qwen/Tiny is gated" in result.stderr and "hf_granted" not in result.output  # hidden input
    assert "License of Qwen/Tiny: tiny-research (other), from the model card" in result.stderr
    assert "Do you acknowledge this license?" in result.stderr
    assert 'model_name = "Tiny"' in result.stdout
    declined = terminal("import-model", REPO, "--name", "again", "--token", "hf_granted", input="n\n")
    assert declined.exit_code == 1
    assert declined.stderr.strip().splitlines()[-1] == (
        "error: the license of Qwen/Tiny was not acknowledged; nothing was imported")
