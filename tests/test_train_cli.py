"""``python main.py train`` and ``register``: output, one-line errors, checkpoint references, and a
SIGKILL in the middle of a checkpoint that ``--resume`` recovers from exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from main import cli
from registry.ops import get_model
from registry.ingest.folder import import_folder
from registry.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]

FINE_TUNE = """
model_name = "base"
seq_len = 32
batch_size = 4
lr = 3e-3
max_steps = 4
save_every = 2
eval_every = 2
eval_batches = 2
freeze = ["model.embed_tokens.*", "model.layers.[0-2].*"]
output_name = "ft"
device = "cpu"
"""

SCRATCH = """
seq_len = 32
batch_size = 4
max_steps = 4
save_every = 2
eval_every = 0
output_name = "lm"
device = "cpu"

[model]
n_layer = 2
n_embd = 32
max_seq_len = 64
"""


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run(root):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, ["--root", str(root), *args], catch_exceptions=False)

    return invoke


@pytest.fixture
def base(workspace, tiny_model):
    return import_folder(workspace, tiny_model("qwen2", hidden_size=64, num_layers=4), name="base")


def write(root: Path, name: str, text: str) -> str:
    path = root / name
    path.write_text(text)
    return str(path)


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[-1]


def test_fine_tune_prints_progress_and_a_summary(run, root, base):
    result = run("train", "--config", write(root, "ft.toml", FINE_TUNE))
    assert result.exit_code == 0, result.output
    components = [line.split()[0] for line in result.stderr.splitlines()]
    assert components == ["model", "freeze", "data", "eval", "train", "train", "eval", "checkpoint",
                          "train", "train", "eval", "checkpoint"]
    step = next(line for line in result.stderr.splitlines() if line.split()[0] == "train")
    assert "step 1/4  loss " in step and "tok/s" in step
    checkpoint = [line for line in result.stderr.splitlines() if "checkpoint" in line][0]
    assert "registered as ft (ft@step-2): 13 tensor blobs written" in checkpoint
    assert "37 frozen reused unread" in checkpoint
    lines = result.stdout.splitlines()
    assert lines[0].startswith("registered ft [") and "(fine-tuned from base): step 4, loss " in lines[0]
    assert lines[2].startswith("2 checkpoints: ft@step-2, ft@step-4")

    info = run("model-info", "ft")
    assert "checkpoints (2, training run ft):" in info.stdout and "  ft@step-2 [" in info.stdout
    assert "fine_tuned_from    base" in info.stdout and "fine_tuned_at" in info.stdout
    lineage = run("lineage", "base")
    assert lineage.stdout.strip().endswith("fine-tuned from it: ft")
    assert run("lineage", "ft").stdout.splitlines()[2].startswith("  -> ft [")
    listed = run("list-models", "--source", "finetuned")
    assert listed.stdout.splitlines()[0].split()[:2] == ["MODEL_NAME", "ARCHITECTURE"]  # no id equal to the name
    assert listed.stdout.splitlines()[1].split()[:3] == ["ft", "qwen2", "finetuned"]
    du = run("du", "--json")
    models = {m["name"]: m for m in json.loads(du.stdout)["models"]}
    trained = ("model.layers.3.", "model.norm.weight")
    frozen = sum(t.blob_size(n) for n, t in base.manifest.tensors.items() if not n.startswith(trained))
    assert frozen > 0.75 * base.manifest.tensor_bytes
    # What the fine-tune shares: the frozen tensors, the config and the tokenizer.
    assert models["ft"]["shared_bytes"] == frozen + base.manifest.file_bytes
    assert models["base"]["shared_bytes"] == models["ft"]["shared_bytes"]


def test_model_info_and_lineage_of_a_fine_tune_do_not_import_torch(run, root, base):
    assert run("train", "--config", write(root, "ft.toml", FINE_TUNE)).exit_code == 0
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['main.py', '--root', sys.argv[1], *sys.argv[2:]]\n"
        "code = 0\n"
        "try:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    for command in (["model-info", "ft"], ["lineage", "ft"], ["du"], ["list-models"]):
        result = subprocess.run([sys.executable, "-c", probe, str(root), *command], cwd=REPO,
                                capture_output=True, text=True)
        # the command ran to the end and succeeded: one that failed early proves nothing
        assert result.returncode == 0, (command, result.stderr)
        assert result.stderr.strip().splitlines()[-1] == "NO-TORCH", (command, result.stderr)


def test_checkpoint_references_on_the_command_line(run, root, base):
    assert run("train", "--config", write(root, "ft.toml", FINE_TUNE)).exit_code == 0
    generated = run("generate", "ft@step-2", "--prompt", "Ada", "--max-new-tokens", "5", "--seed", "1")
    assert generated.exit_code == 0 and generated.stderr.split()[1] == "ft@step-2"
    registered = run("register", "ft@step-2")
    assert registered.exit_code == 0
    assert registered.stdout.startswith("registered ft-step-2 [")
    assert "ft@step-2, finetuned" in registered.stdout
    assert (root / "models/ft-step-2/config.json").exists()
    taken = run("register", "ft@step-2", "--name", "base")
    assert taken.exit_code == 1 and one_error_line(taken).startswith("error: a model named 'base' is already")
    missing = run("generate", "ft@step-3", "--prompt", "Ada")
    assert one_error_line(missing) == ("error: no checkpoint 'ft@step-3': the run that produced 'ft' stored "
                                       "no checkpoint at step 3; its run has checkpoints at step 2, 4")


def test_from_scratch_then_resume_past_the_end(run, root, workspace):
    first = run("train", "--config", write(root, "lm.toml", SCRATCH))
    assert first.exit_code == 0, first.output
    assert "(custom, trained from scratch): step 4" in first.stdout
    again = run("train", "--config", write(root, "lm.toml", SCRATCH))
    assert again.exit_code == 1
    assert one_error_line(again) == ("error: output_name 'lm' is already registered; pass --resume to "
                                     "continue its training, or choose another output_name")
    longer = write(root, "lm6.toml", SCRATCH.replace("max_steps = 4", "max_steps = 6"))
    more = run("train", "--config", longer, "--resume")
    assert more.exit_code == 0, more.output
    assert "resume     from lm@step-4 [" in more.stderr and "resumed at step 4" in more.stdout
    assert get_model(workspace, "lm")[1].training.step == 6


@pytest.mark.parametrize("text, resume, code, message", [
    ("max_stepz = 3", False, 2, "unknown key 'max_stepz'"),
    (FINE_TUNE.replace('"base"', '"ghost"'), False, 1, "error: no model named 'ghost' is registered"),
    (FINE_TUNE, True, 2, "error: no model named 'ft' is registered, so there is no run to resume"),
    (FINE_TUNE.replace('"model.layers.[0-2].*"', '"layers.*"'), False, 2,
     "key 'freeze[1]': 'layers.*' matches no tensor of base"),
])
def test_bad_runs_are_one_line(run, root, base, text, resume, code, message):
    result = run("train", "--config", write(root, "bad.toml", text), *(["--resume"] if resume else []))
    assert result.exit_code == code, result.output
    assert message in one_error_line(result) and result.stdout == ""
    assert list(Workspace.open(root).read_registry().models) == ["base"]


def main_py(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), "--root", str(root), *args],
                          capture_output=True, text=True, cwd=str(root), timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def commits(log: Path, root: Path) -> list[int]:
    """The fsops step numbers at which registry.json was replaced (the commit points)."""
    steps = []
    for line in log.read_text().splitlines():
        number, op, path = line.split("\t")
        if op == "rename" and path == str(root / "models" / "registry.json"):
            steps.append(int(number))
    return steps


@pytest.mark.slow
@pytest.mark.parametrize("where", ["writing the second checkpoint's blobs", "at the second commit"])
def test_sigkill_during_a_checkpoint_then_resume_matches_a_straight_run(tmp_path, tiny_model, where):
    source = tiny_model("qwen2", hidden_size=64, num_layers=4)
    roots = {}
    for label in ("straight", "killed"):
        roots[label] = tmp_path / label
        roots[label].mkdir()
        import_folder(Workspace.open(roots[label]), source, name="base")
        write(roots[label], "ft.toml", FINE_TUNE)
        # Every fan-out folder exists up front, so both runs take the same numbered steps
        # (blobs with timestamps in them would otherwise create different ones).
        for fan in range(256):
            (roots[label] / ".modelstore" / "objects" / f"{fan:02x}").mkdir(exist_ok=True)
    log = tmp_path / "steps.log"
    straight = main_py(roots["straight"], "train", "--config", "ft.toml",
                       env={"MODELSTORE_FAULT": "count", "MODELSTORE_FAULT_LOG": str(log)})
    assert straight.returncode == 0, straight.stderr
    first, second = commits(log, roots["straight"])
    kill_at = {"writing the second checkpoint's blobs": (first + second) // 2, "at the second commit": second}
    killed_log = tmp_path / "killed.log"
    killed = main_py(roots["killed"], "train", "--config", "ft.toml",
                     env={"MODELSTORE_FAULT": f"kill@{kill_at[where]}",
                          "MODELSTORE_FAULT_LOG": str(killed_log)})
    assert killed.returncode == -9
    assert commits(killed_log, roots["killed"]) == [first, second][:1 + (where == "at the second commit")]
    last_op = killed_log.read_text().splitlines()[-1].split("\t")[1:]
    if where == "at the second commit":  # killed just before registry.json was replaced
        assert last_op == ["rename", str(roots["killed"] / "models" / "registry.json")]
    else:
        assert last_op[1].startswith(str(roots["killed"] / ".modelstore"))
    ws = Workspace.open(roots["killed"])
    entry, manifest = get_model(ws, "ft")  # still the first checkpoint, complete
    assert manifest.training.step == 2
    validation = main_py(roots["killed"], "validate-registry")
    if where == "at the second commit":
        # register() swaps the view before it commits the registry (DESIGN's write order), so a
        # kill between the two leaves models/ft showing the uncommitted version: validation notes
        # it (nothing is missing, no error), and the resumed run's commit settles it.
        notes = [line for line in validation.stdout.splitlines() if line.startswith("info: view-uncommitted")]
        assert len(notes) == 1 and "models/ft shows version" in notes[0], validation.stdout
    assert validation.returncode == 0, validation.stdout

    resumed = main_py(roots["killed"], "train", "--config", "ft.toml", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    expected = get_model(Workspace.open(roots["straight"]), "ft")[1]
    final = get_model(ws, "ft")[1]
    assert final.tensors == expected.tensors and final.parents == [entry.manifest]
    assert final.training.optimizer["optimizer.safetensors"] == \
        expected.training.optimizer["optimizer.safetensors"]
    assert final.training.metrics == expected.training.metrics
    settled = main_py(roots["killed"], "validate-registry")
    assert settled.returncode == 0 and "view-uncommitted" not in settled.stdout, settled.stdout
