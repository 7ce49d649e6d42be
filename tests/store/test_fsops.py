"""fsops: atomic replacement, and the fault hook the reliability suite drives."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from store.fs import fsops


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")
    fsops.atomic_write(target, b"new", tmp_path / "tmp")
    assert target.read_bytes() == b"new"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_rmtree_removes_a_link_not_its_target(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link").symlink_to(outside)
    fsops.rmtree(tree)
    assert not tree.exists()
    assert (outside / "keep.txt").read_text() == "precious"
    link = tmp_path / "solo-link"
    link.symlink_to(outside)
    fsops.rmtree(link)
    assert not os.path.lexists(link) and outside.is_dir()


def _run_with_fault(tmp_path, fault: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(f"""
        from pathlib import Path
        from store.fs import fsops
        for i in range(3):
            fsops.atomic_write(Path({str(tmp_path)!r}) / f"f{{i}}", b"x", Path({str(tmp_path)!r}) / "tmp")
    """)
    env = dict(os.environ, MODELSTORE_FAULT=fault, MODELSTORE_FAULT_LOG=str(tmp_path / "steps.log"))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True)


def test_fault_hook_counts_steps_and_kills_at_the_chosen_one(tmp_path):
    counted = _run_with_fault(tmp_path, "count")
    assert counted.returncode == 0
    steps = (tmp_path / "steps.log").read_text().splitlines()
    assert [s.split("\t")[1] for s in steps[:5]] == ["mkdir", "create", "write", "fsync", "rename"]
    (tmp_path / "steps.log").unlink()
    killed = _run_with_fault(tmp_path, "kill@5")
    assert killed.returncode == -9
    assert len((tmp_path / "steps.log").read_text().splitlines()) == 5


def test_fault_hook_injects_enospc_naming_the_path(tmp_path):
    result = _run_with_fault(tmp_path, "enospc@3")
    assert result.returncode == 1
    assert "StoreIOError: ENOSPC: No space left on device at" in result.stderr
