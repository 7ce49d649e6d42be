"""``make reliability`` (``report.py``) checks what it prints: on a deliberately broken store it
exits 1, lists the broken promises and heads its tables FAILED; on a sound one it exits 0.
And ``--write-readme`` replaces exactly the README's marked section."""

from __future__ import annotations

import os

import pytest

from tests.reliability import diskfull_fs, diskfull_scenarios, report

# Loaded by every CLI subprocess through PYTHONPATH: a store whose error path forgets to remove
# its temp files (an unlink in .modelstore/tmp/ does nothing). The commands still succeed and
# still print their one-line errors; only the harness's checks can see the debris.
BROKEN_STORE = '''
import store.fs.fsops as fsops

_unlink = fsops.unlink


def unlink(path, missing_ok=True):
    if "/.modelstore/tmp/" not in str(path):
        _unlink(path, missing_ok)


fsops.unlink = unlink
'''


def small_diskfull(monkeypatch, tmp_path, broken: bool) -> tuple[int, str]:
    monkeypatch.setattr(diskfull_scenarios, "SCENARIOS",
                        {"import-fresh": diskfull_scenarios.SCENARIOS["import-fresh"]})

    def no_mount():
        raise diskfull_fs.MountUnavailable("not in this test")

    monkeypatch.setattr(diskfull_fs, "mount_method", no_mount)
    if broken:
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(BROKEN_STORE)
        monkeypatch.setenv("PYTHONPATH", str(site))
    out = tmp_path / "reliability.md"
    code = report.main(["--only", "diskfull", "--small", "--out", str(out)])
    return code, out.read_text()


def test_make_reliability_fails_on_a_broken_store(monkeypatch, tmp_path, capsys):
    code, tables = small_diskfull(monkeypatch, tmp_path, broken=True)
    assert code == 1
    assert tables.startswith("**FAILED**")
    stderr = capsys.readouterr().err
    assert "FAILED:" in stderr and "temp left" in stderr and "raised" not in stderr


def test_make_reliability_passes_on_a_sound_store(monkeypatch, tmp_path):
    code, tables = small_diskfull(monkeypatch, tmp_path, broken=False)
    assert code == 0, tables
    assert "FAILED" not in tables and "| import-fresh | " in tables


def test_write_readme_replaces_only_the_marked_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\nold figures\n{report.END}\nrest\n")
    report.write_readme("new figures\n", readme)
    assert readme.read_text() == f"intro\n{report.BEGIN}\nnew figures\n{report.END}\nrest\n"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit):
        report.write_readme("x\n", readme)


def test_write_readme_needs_a_full_run():
    with pytest.raises(SystemExit):
        report.main(["--small", "--write-readme"])
    assert os.path.exists(report.README)
