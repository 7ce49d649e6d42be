"""The CLI: thin commands, one-line errors with exit codes, no torch for read-only commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from main import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(root):
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(cli, ["--root", str(root), *args], input=input, catch_exceptions=False)

    return invoke


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_import_list_info_delete(run, tiny_model, root):
    source = tiny_model()
    imported = run("import-model", str(source), "--name", "tiny")
    assert imported.exit_code == 0, imported.output
    assert 'model_name = "tiny"' in imported.stdout
    assert "weights" in imported.stderr and "tokenizer" in imported.stderr

    listed = run("list-models")
    assert listed.stdout.splitlines()[0].split() == ["MODEL_NAME", "MODEL_ID", "ARCHITECTURE", "SOURCE", "SIZE",
                                                     "CREATED"]
    assert listed.stdout.splitlines()[1].split()[:4] == ["tiny", "src", "qwen2", "local"]
    assert listed.stdout.splitlines()[1].endswith("just now")
    assert listed.stdout.strip().endswith("1 model")
    as_json = json.loads(run("list-models", "--json").stdout)
    assert [e["model_name"] for e in as_json] == ["tiny"]
    assert run("list-models", "--source", "huggingface").stdout.strip() == "0 models"

    info = run("model-info", "tiny")
    assert "architecture_type  qwen2" in info.stdout and "lineage:" in info.stdout
    info_json = json.loads(run("model-info", "tiny", "--json").stdout)
    manifest = info_json["manifest"]
    assert manifest == json.loads((root / "models/tiny/metadata.json").read_text())["manifest"]
    assert info_json["model_size"] > 0 and info_json["file_size"] > 0

    deleted = run("delete-model", "tiny", "--yes", "--delete-files")
    assert deleted.exit_code == 0 and "deleted tiny" in deleted.stdout
    assert not (root / "models" / "tiny").exists()
    assert run("list-models").stdout.strip() == "0 models"


def test_delete_needs_confirmation_without_a_terminal(run, tiny_model):
    run("import-model", str(tiny_model()), "--name", "tiny")
    result = run("delete-model", "tiny")
    assert result.exit_code == 2
    assert one_error_line(result) == "error: deleting 'tiny' needs confirmation; pass --yes to delete without asking"
    assert json.loads(run("list-models", "--json").stdout)[0]["model_name"] == "tiny"


def test_missing_model_is_one_line_with_exit_1(run):
    result = run("model-info", "nope")
    assert result.exit_code == 1
    assert one_error_line(result) == ("error: no model named 'nope' is registered; "
                                      "run `python main.py list-models` to see the registered names")


def test_bad_name_and_duplicate_name(run, tiny_model):
    source = tiny_model()
    bad = run("import-model", str(source), "--name", "a..b")
    assert bad.exit_code == 2
    assert one_error_line(bad) == ("error: invalid model name 'a..b': a name must not contain '..'; "
                                   "choose another name with --name")
    run("import-model", str(source), "--name", "tiny")
    other = tiny_model("qwen3", name="other")
    dup = run("import-model", str(other), "--name", "tiny")
    assert dup.exit_code == 1
    assert one_error_line(dup) == ("error: a model named 'tiny' is already registered; "
                                   "pass --on-conflict overwrite|rename, or choose another --name")
    renamed = run("import-model", str(other), "--name", "tiny", "--on-conflict", "rename")
    assert 'model_name = "tiny-2"' in renamed.stdout


def test_unknown_store_format_is_refused(run, root):
    (root / ".modelstore").mkdir()
    (root / ".modelstore" / "FORMAT").write_text('{"format": 9, "hash": "blake3"}')
    result = run("list-models")
    assert result.exit_code == 1
    assert one_error_line(result) == ("error: store format 9 is not supported: this modelstore reads "
                                      "format 1; upgrade modelstore to open this store")


def test_root_from_environment(tiny_model, root):
    runner = CliRunner()
    source = tiny_model()
    result = runner.invoke(cli, ["import-model", str(source), "--name", "envroot"],
                           env={"MODELSTORE_ROOT": str(root)})
    assert result.exit_code == 0, result.output
    assert (root / "models" / "envroot").is_dir()


def main_py(*args: str, root: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "--root", str(root), *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_traceback_only_with_debug(root):
    plain = main_py("model-info", "ghost", root=root)
    assert plain.returncode == 1 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    debug = main_py("model-info", "ghost", root=root, env={"MODELSTORE_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ModelNotFoundError" in debug.stderr


def test_read_only_commands_do_not_import_torch(tiny_model, root):
    assert main_py("import-model", str(tiny_model()), "--name", "tiny", root=root).returncode == 0
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['main.py', '--root', sys.argv[1], sys.argv[2], *sys.argv[3:]]\n"
        "code = 0\n"
        "try:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    for command in (["list-models"], ["model-info", "tiny"], ["model-info", "tiny", "--json"]):
        result = subprocess.run([sys.executable, "-c", probe, str(root), *command], cwd=ROOT,
                                capture_output=True, text=True)
        # the command ran to the end and succeeded: one that failed early proves nothing
        assert result.returncode == 0, (command, result.stderr)
        assert result.stderr.strip().splitlines()[-1] == "NO-TORCH", (command, result.stderr)
