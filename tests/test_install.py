"""``pip install .`` and ``pip install -e .`` give a working ``modelstore`` command.

The checkout's files are copied to a fresh folder (the build writes build/ and egg-info
beside the sources) and installed into a fresh venv, with the test venv's setuptools (no
build isolation: no network) and without dependencies (the fresh venv sees the test venv's). The command then runs from another folder, so nothing is found through the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def checkout_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def install(tmp_path: Path, *editable: str) -> tuple[Path, dict]:
    """A fresh venv (no pip of its own) that sees the test venv's packages through a .pth
    file, as the dependencies of ``pip install .`` would be there; the checkout copy is
    installed into it by that pip."""
    source = checkout_copy(tmp_path / "checkout")
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "_test_venv_packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", *editable, str(source)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return venv, env


@pytest.mark.slow
@pytest.mark.parametrize("editable", [(), ("-e",)], ids=["install", "editable"])
def test_pip_install_gives_a_modelstore_command_equal_to_main_py(tmp_path, editable, tiny_model):
    prefix, env = install(tmp_path, *editable)
    command = prefix / "bin" / "modelstore"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    version = subprocess.run([str(command), "--version"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert version.returncode == 0, version.stderr
    assert version.stdout == "modelstore 0.1.0\n"
    where = subprocess.run([str(prefix / "bin" / "python"), "-c", "import cli; print(cli.__file__)"],
                           cwd=elsewhere, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert not where.startswith(str(REPO)), where

    src = tiny_model()
    root = tmp_path / "ws"
    imported = subprocess.run([str(command), "--root", str(root), "import-model", str(src), "--name", "tiny"],
                              cwd=elsewhere, env=env, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    ours = subprocess.run([str(command), "--root", str(root), "list-models", "--json"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, check=True).stdout
    theirs = subprocess.run([sys.executable, str(REPO / "main.py"), "--root", str(root), "list-models", "--json"],
                            capture_output=True, text=True, check=True).stdout
    assert ours == theirs and '"tiny"' in ours
    if not editable:  # the corpus travels as a data file, for runs that name no data
        assert (prefix / "share" / "modelstore" / "corpus.txt").read_bytes() == \
            (REPO / "data" / "corpus.txt").read_bytes()
