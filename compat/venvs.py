"""One pinned virtualenv per consumer, under ``compat/out/venvs/<consumer>/``.

Install order: the project's CPU torch (``TORCH``) on its own first, then
``compat/requirements-<consumer>.txt`` with ``--no-deps`` (the file pins every package), so
no consumer's dependency can bring in another torch build or a CUDA companion. A venv is
reused while a stamp file in it holds the hash of its requirement file; a changed file
rebuilds it from scratch. pip's output goes to ``compat/out/logs/<consumer>-install.log``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent
OUT_DIR = COMPAT_DIR / "out"
VENVS_DIR = OUT_DIR / "venvs"
LOGS_DIR = OUT_DIR / "logs"
TORCH = "torch==2.13.0"  # the project's pin (Makefile: TORCH); a CPU wheel
STAMP = ".compat-installed"


def requirements_path(consumer: str) -> Path:
    return COMPAT_DIR / f"requirements-{consumer}.txt"


@dataclass
class Env:
    consumer: str
    python: Path | None  # None: the install failed
    reason: str = ""  # why it failed, one line


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _last_error(log: Path) -> str:
    """The line of pip's output that says why it failed (its last ``ERROR:`` line)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    line = (errors or lines or ["pip failed without output"])[-1]
    return line.removeprefix("ERROR: ")[:200]


def ensure(consumer: str) -> Env:
    """The consumer's venv, built if missing or stale."""
    req = requirements_path(consumer)
    root = VENVS_DIR / consumer
    python = root / "bin" / "python"
    stamp = root / STAMP
    want = _digest(req)
    if stamp.is_file() and stamp.read_text().strip() == want and python.exists():
        return Env(consumer, python)
    shutil.rmtree(root, ignore_errors=True)
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    log = LOGS_DIR / f"{consumer}-install.log"
    # The base interpreter, not this venv's: the consumer's venv must not see the project's packages.
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", str(root)],
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", TORCH],
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "-r", str(req)],
    ]
    with log.open("w") as out:
        for step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode:
                out.close()
                return Env(consumer, None, f"install failed: {_last_error(log)}")
    stamp.write_text(want + "\n")
    return Env(consumer, python)
