"""Everyday behaviour: a source folder under models/ is not an orphan, gc empties old
quarantine, du shows it and ends with TOTAL, train refuses missing data before loading,
CPU thread defaults, human times."""

from __future__ import annotations

import os
import time

import pytest
from click.testing import CliRunner

from main import cli


@pytest.fixture
def run(root):
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, ["--root", str(root), *args], catch_exceptions=False)


def test_fix_on_a_clean_store_with_the_source_under_models_plans_nothing(root, tiny_model, run):
    (root / "models").mkdir()
    source = tiny_model(name="src")
    os.rename(source, root / "models" / "my-download")
    assert run("import-model", str(root / "models" / "my-download"), "--name", "tiny").exit_code == 0
    result = run("validate-registry", "--fix", "--dry-run")
    assert result.exit_code == 0 and "nothing to repair" in result.stdout and "orphan" not in result.stdout


def test_gc_empties_old_quarantine_and_du_shows_it(root, tiny_model, run):
    assert run("import-model", str(tiny_model()), "--name", "t").exit_code == 0
    assert run("delete-model", "t", "--yes", "--keep-view").exit_code == 0
    assert run("validate-registry", "--fix", "--yes").exit_code == 0  # the kept view: quarantined
    du = run("du").stdout.splitlines()
    assert du[-2].startswith("quarantine: ") and "1 item " in du[-2]
    assert du[-1].startswith("TOTAL ") and "objects and quarantine" in du[-1]
    assert "quarantined" not in run("gc").stdout  # younger than the grace period: kept
    listed = run("gc", "--grace", "0", "--dry-run").stdout
    assert "would remove quarantined .modelstore/quarantine/orphans/" in listed and "1 quarantined item" in listed
    removed = run("gc", "--grace", "0").stdout
    assert "1 quarantined item" in removed
    assert not any((root / ".modelstore" / "quarantine" / "orphans").iterdir())
    assert run("du").stdout.splitlines()[-1] == "TOTAL 0 B on disk (objects)"


def test_delete_removes_the_view_by_default(root, tiny_model, run):
    assert run("import-model", str(tiny_model()), "--name", "t").exit_code == 0
    result = run("delete-model", "t", "--yes")
    assert result.exit_code == 0 and "deleted t and its view models/t/" in result.stdout
    assert not (root / "models" / "t").exists()


def test_train_refuses_missing_data_before_loading_the_model(root, tmp_path, run):
    config = tmp_path / "elsewhere" / "run.toml"
    config.parent.mkdir()
    config.write_text('model_name = "not-even-registered"\noutput_name = "x"\ndata = "../data/corpus.txt"\n')
    result = run("train", "--config", str(config))
    assert result.exit_code == 2
    assert f"{tmp_path / 'data' / 'corpus.txt'} does not exist" in result.stderr
    assert str(config) in result.stderr and "not-even-registered" not in result.stderr


def test_cpu_threads_default_and_overrides(monkeypatch):
    import torch

    from training.threads import SMALL_MODEL_PARAMS, physical_cores, set_cpu_threads

    before = torch.get_num_threads()
    try:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MODELSTORE_THREADS"):
            monkeypatch.delenv(var, raising=False)
        assert set_cpu_threads(torch.device("cpu"), 35_000) == 1
        assert set_cpu_threads(torch.device("cpu"), SMALL_MODEL_PARAMS) == min(physical_cores(), 8)
        monkeypatch.setenv("MODELSTORE_THREADS", "3")
        assert set_cpu_threads(torch.device("cpu"), 35_000) == 3 and torch.get_num_threads() == 3
        monkeypatch.delenv("MODELSTORE_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert set_cpu_threads(torch.device("cpu"), 35_000) is None
        assert set_cpu_threads(torch.device("meta"), 35_000) is None
    finally:
        torch.set_num_threads(before)


def test_human_times():
    from cli.render import ago

    now = time.time()
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    assert ago(iso(now - 5), now) == "just now"
    assert ago(iso(now - 300), now) == "5 min ago"
    assert ago(iso(now - 7300), now) == "2 h ago"
    assert ago(iso(now - 3 * 86400), now) == "3 d ago"
    assert ago("2020-01-02T00:00:00Z", now) == "2020-01-02"
