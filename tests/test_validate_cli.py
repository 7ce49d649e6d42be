"""The CLI of validate-registry (--fast, --json, --fix, --dry-run, --yes) and gc."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner

from cli import app as cli_app
import main
from main import cli
from tests.registry.breakage import EXCLUSIVE, flip_bit, two_models, workspace_state


@pytest.fixture
def s(workspace, tiny_model):
    return two_models(workspace, tiny_model)


@pytest.fixture
def run(root):
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(cli, ["--root", str(root), *args], input=input, catch_exceptions=False)

    return invoke


def one_error_line(result) -> str:
    """The error line; anything else on stderr may only be a status line ("  verify ...")."""
    lines = [line for line in result.stderr.splitlines() if line and not line.startswith("  ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


def test_clean_store_exits_0_with_the_summary_line(s, run):
    result = run("validate-registry")
    assert result.exit_code == 0
    assert result.stdout.strip().splitlines()[-1].endswith("verified, no problems found")
    assert result.stdout.strip().startswith("2 models, ")
    assert "re-hashing" in result.stderr  # progress goes to stderr
    fast = run("validate-registry", "--fast")
    assert fast.exit_code == 0 and "--fast: not re-hashed" in fast.stdout


def test_problem_exits_1_one_line_per_finding(s, run):
    digest = s.tensor("a", EXCLUSIVE)
    flip_bit(s.obj(digest))
    (s.root / "models" / "leftover").mkdir()
    result = run("validate-registry")
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"error: object-corrupt: tensor-{EXCLUSIVE}.safetensors of model 'a' "
                               f"(object {digest[:12]})")
    assert lines[1].startswith("info: orphan-directory: models/leftover (folder) is not registered")
    assert lines[2].endswith(", 1 error (1 note)")


def test_json_output(s, run):
    digest = s.tensor("a", EXCLUSIVE)
    os.unlink(s.obj(digest))
    result = run("validate-registry", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["findings"] == [{
        "code": "object-missing", "severity": "error", "models": ["a"], "digest": digest,
        "path": str(s.obj(digest).relative_to(s.root)), "message": doc["findings"][0]["message"],
    }]
    assert doc["summary"]["errors"] == 1 and doc["summary"]["ok"] is False and doc["summary"]["models"] == 2


def test_fix_dry_run_shows_the_plan_and_changes_nothing(s, run):
    flip_bit(s.obj(s.tensor("a", EXCLUSIVE)))
    state = workspace_state(s.root)
    result = run("validate-registry", "--fix", "--dry-run")
    assert result.exit_code == 1
    assert "repair plan (2 steps" in result.stdout
    assert "* move corrupt object" in result.stdout and "- restore object" in result.stdout
    assert result.stdout.strip().endswith("dry run: nothing was changed")
    assert workspace_state(s.root) == state


def test_fix_needs_yes_without_a_terminal(s, run):
    flip_bit(s.obj(s.tensor("a", EXCLUSIVE)))
    state = workspace_state(s.root)
    result = run("validate-registry", "--fix")
    assert result.exit_code == 2
    assert "needs confirmation; pass --yes" in one_error_line(result)
    assert "repair plan" in result.stdout  # the plan was shown before asking
    assert workspace_state(s.root) == state


def test_fix_asks_on_a_terminal_and_no_changes_nothing(s, run, monkeypatch):
    monkeypatch.setattr(cli_app, "interactive", lambda: True)
    flip_bit(s.obj(s.tensor("a", EXCLUSIVE)))
    state = workspace_state(s.root)
    declined = run("validate-registry", "--fix", input="n\n")
    assert declined.exit_code == 1 and "Apply this repair?" in declined.stderr
    assert "cancelled; nothing was changed" in declined.stderr
    assert workspace_state(s.root) == state
    accepted = run("validate-registry", "--fix", input="y\n")
    assert accepted.exit_code == 0 and "after repair:" in accepted.stdout


def test_fix_yes_repairs_and_revalidates(s, run):
    flip_bit(s.obj(s.tensor("a", EXCLUSIVE)))
    result = run("validate-registry", "--fix", "--yes")
    assert result.exit_code == 0, result.output
    assert "restored object" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("after repair: 2 models")
    assert result.stdout.strip().endswith("no problems found (1 note)")  # the quarantine note
    again = run("validate-registry", "--fix")
    assert again.exit_code == 0 and "nothing to repair" in again.stdout


def test_fix_without_destructive_steps_does_not_ask(s, run):
    os.unlink(s.obj(s.tensor("a", EXCLUSIVE)))
    result = run("validate-registry", "--fix")
    assert result.exit_code == 0 and "after repair:" in result.stdout


def test_fix_json(s, run):
    s.ws.registry_path.write_bytes(b"")
    doc = json.loads(run("validate-registry", "--fix", "--yes", "--json").stdout)
    assert [f["code"] for f in doc["findings"]] == ["registry-empty"]
    assert doc["plan"]["steps"][0]["kind"] == "recover-registry" and doc["plan"]["destructive"]
    assert doc["after"]["summary"]["ok"] and doc["ok"]


def test_unrepairable_problem_exits_1_and_says_what_to_do(s, run):
    doc = json.loads(s.ws.registry_path.read_bytes())
    doc["schema_version"] = 3
    s.ws.registry_path.write_text(json.dumps(doc))
    result = run("validate-registry", "--fix", "--yes")
    assert result.exit_code == 1
    assert "! models/registry.json was written by a newer modelstore" in result.stdout


def test_fix_options_need_fix(s, run):
    result = run("validate-registry", "--dry-run")
    assert result.exit_code == 2 and "add --fix" in one_error_line(result)


def test_gc_dry_run_then_gc(s, run):
    run("delete-model", "b", "--yes", "--delete-files")
    listed = run("gc", "--dry-run", "--grace", "0")
    assert listed.exit_code == 0
    lines = listed.stdout.strip().splitlines()
    assert all(line.startswith("would remove object ") for line in lines[:-1]) and len(lines) > 1
    assert lines[-1].startswith("dry run: would free ")
    removed = run("gc", "--grace", "0")
    assert removed.exit_code == 0
    assert removed.stdout.startswith(f"removed {len(lines) - 1} unreachable objects and 0 temp files, freed ")
    assert run("validate-registry").exit_code == 0


def test_gc_forgets_source_records_of_removed_folders(s, run):
    """The store's memory of a source folder (store.sourcecache) goes once the folder is gone."""
    import shutil

    records = sorted((s.root / ".modelstore" / "sources").iterdir())
    assert len(records) == 2  # one per imported folder
    shutil.rmtree(s.src_b)
    listed = run("gc", "--dry-run", "--grace", "0")
    assert listed.exit_code == 0
    wanted = [line for line in listed.stdout.splitlines() if line.startswith("would remove source record ")]
    assert len(wanted) == 1 and wanted[0].endswith(f"(of {s.src_b}: folder gone)")
    assert ", 1 stale source record;" in listed.stdout.splitlines()[-1]  # singular since "1 item" plurals
    removed = run("gc", "--grace", "0")
    assert removed.exit_code == 0 and ", 1 stale source record, freed " in removed.stdout
    left = sorted((s.root / ".modelstore" / "sources").iterdir())
    assert len(left) == 1 and wanted[0].startswith(f"would remove source record .modelstore/sources/")
    assert str(left[0].relative_to(s.root)) not in wanted[0]
    assert run("validate-registry").exit_code == 0


def test_gc_default_grace_keeps_fresh_objects(s, run):
    run("delete-model", "b", "--yes", "--delete-files")
    result = run("gc")
    assert result.exit_code == 0
    assert "removed 0 unreachable objects" in result.stdout and "younger than 1 h kept" in result.stdout
    hint = result.stdout.strip().splitlines()[-1]
    assert "younger than the grace period (1 h)" in hint and "`python main.py gc --grace 0`" in hint


def test_gc_bad_grace_is_one_line(s, run):
    result = run("gc", "--grace", "soon")
    assert result.exit_code == 2 and "invalid duration 'soon'" in one_error_line(result)


def test_gc_refuses_with_unreadable_manifest(s, run):
    flip_bit(s.obj(s.a.manifest_digest), offset=40)
    os.utime(s.obj(s.b.manifest_digest), (time.time() - 7200,) * 2)
    result = run("gc", "--grace", "0")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "gc aborted, nothing was deleted" in line and "validate-registry" in line


def test_validation_and_gc_never_import_torch(s, root):
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\nfrom main import cli\n"
            f"for args in (['validate-registry'], ['validate-registry', '--fix', '--dry-run'], "
            f"['gc', '--dry-run']):\n"
            f"    assert CliRunner().invoke(cli, ['--root', {str(root)!r}, *args]).exit_code == 0\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=main.__file__.rsplit("/", 1)[0])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
