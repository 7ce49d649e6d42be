"""The CLI on a real terminal (a pseudo-terminal): progress bars, --quiet, no prompt for a
re-run import, the conflict prompt; and the same commands off a terminal draw nothing."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BAR = re.compile(r"\|\s*[\d.]+k?/?[\d.]*k?B?")  # tqdm's "  import:  40%|####  | 58.0k/145k ..."

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)  # the suite turns bars off; a user's terminal has them
    env.update(COLUMNS="120", TERM="xterm")
    return env


def on_terminal(root: Path, *args: str, answers: dict[str, str] | None = None,
                timeout: float = 120) -> tuple[int, str]:
    """Run ``python main.py --root ROOT ARGS`` with stdin, stdout and stderr on a new
    pseudo-terminal; type ``answers[text]`` once ``text`` appears. (exit code, all output)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal has a size
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--root", str(root), *args],
                            stdin=slave, stdout=slave, stderr=slave, env=_env(), close_fds=True)
    os.close(slave)
    pending = dict(answers or {})
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                for text, answer in list(pending.items()):
                    if text in out.decode(errors="replace"):
                        os.write(master, answer.encode())
                        del pending[text]
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"{args} did not finish on the terminal (a prompt?):\n{out.decode(errors='replace')}")
        return proc.wait(timeout=30), out.decode(errors="replace").replace("\r\n", "\n")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def off_terminal(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "--root", str(root), *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, env=_env(), timeout=120)


def test_import_shows_progress_on_a_terminal_and_not_elsewhere(root, tiny_model):
    source = tiny_model()
    code, out = on_terminal(root, "import-model", str(source), "--name", "t")
    assert code == 0, out
    assert "import:" in out and "%|" in out and BAR.search(out), out  # the bar: bytes, then rate and ETA
    assert "weights" in out and "imported t [" in out

    code, out = on_terminal(root, "validate-registry")
    assert code == 0 and "verify:" in out and "%|" in out, out

    # Off a terminal: the same status lines, no bar.
    piped = off_terminal(root, "validate-registry")
    assert piped.returncode == 0 and "%|" not in piped.stderr and "re-hashing" in piped.stderr


def test_quiet_keeps_results_and_errors_only(root, tiny_model):
    source = tiny_model()
    code, out = on_terminal(root, "--quiet", "import-model", str(source), "--name", "t")
    assert code == 0, out
    assert "%|" not in out and "weights" not in out and "tokenizer" not in out
    assert out.startswith("imported t [")
    code, out = on_terminal(root, "-q", "validate-registry")
    assert code == 0 and "%|" not in out and "re-hashing" not in out and "no problems found" in out
    code, out = on_terminal(root, "-q", "model-info", "missing")
    assert code == 1 and out.startswith("error: no model named 'missing'")


def test_rerun_import_on_a_terminal_is_a_quiet_no_op(root, tiny_model):
    source = tiny_model()
    assert off_terminal(root, "import-model", str(source), "--name", "t").returncode == 0
    code, out = on_terminal(root, "import-model", str(source), "--name", "t")  # no answer: a prompt would hang
    assert code == 0, out
    assert out.strip().splitlines()[-1].startswith("t is up to date [") and "already exists" not in out
    assert "weights" not in out  # the status lines of an import that changed nothing are not shown


def test_conflict_prompt_lists_each_choice_once_and_names_the_new_name(root, tiny_model):
    assert off_terminal(root, "import-model", str(tiny_model(name="a")), "--name", "t").returncode == 0
    code, out = on_terminal(root, "import-model", str(tiny_model(name="b", seed=1)), "--name", "t",
                            answers={"or cancel?": "rename\n"})
    assert code == 0, out
    line = next(line for line in out.splitlines() if "already exists" in line)
    prompt, default = line.split(" [", 1)  # the question; then "[cancel]: " and the typed answer, echoed
    assert "rename (import as 't-2')" in prompt and default.startswith("cancel]: ")
    for choice in ("overwrite", "rename", "cancel"):
        assert prompt.count(choice) == 1, line
    assert "imported t-2 [" in out


def test_gc_shows_progress_on_a_terminal(root, tiny_model):
    assert off_terminal(root, "import-model", str(tiny_model()), "--name", "t").returncode == 0
    assert off_terminal(root, "delete-model", "t", "--yes").returncode == 0
    code, out = on_terminal(root, "gc", "--grace", "0")
    # every object of the deleted model: its distinct blobs, its kept safetensors header, its manifest
    assert code == 0 and "gc:" in out and "%|" in out and "removed 32 unreachable objects" in out, out
