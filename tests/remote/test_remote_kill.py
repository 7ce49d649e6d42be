"""SIGKILL a `python main.py push` / `pull` mid-way, then run it again: it completes, the
remote never has a ref to missing content, and the local store stays valid."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from registry.check.validate import validate
from registry.remote.config import open_remote
from tests.remote.helpers import ROOT, run_cli


def _start(root, *args):
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--root", str(root), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))


def _ref_content_complete(ws, name) -> bool:
    remote = open_remote(ws, None)
    got = remote.store.read_ref(name)
    if got is None:
        return True
    import msgspec
    digest = msgspec.json.decode(got[0])["manifest"]
    from store.manifest import decode_manifest
    manifest = decode_manifest(digest, remote.store.get_verified(digest))
    return all(remote.store.holds(d, s) for d, s in manifest.expected_sizes().items())


def _timed(root, *args) -> float:
    start = time.monotonic()
    run_cli(root, *args)
    return time.monotonic() - start


def _kill_within(root, window: float, rng: random.Random, *args) -> bool:
    """Start the command, SIGKILL it at a random point of ``window`` seconds (how long the
    whole command took when it ran to the end); True if it was still running then."""
    proc = _start(root, *args)
    time.sleep(rng.uniform(0.05, window))
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return running


def _trials(make_store, remote_url, count, workers=1):
    """``count`` trials, each killing a push of a model the remote lacks, then a pull of it
    into an empty store, at a random point of the time the command takes; then the command
    runs again and completes. Trials run ``workers`` at a time (they mostly wait)."""
    seeds = {f"m{trial}": 100 + trial for trial in range(count)}
    a = make_store("a", {"first": 1, **seeds}, remote=remote_url)
    # How long each command takes when nothing stops it: the window the kills fall in.
    push_s = _timed(a.root, "push", "first")
    pull_s = _timed(make_store("timing", remote=remote_url).root, "pull", "first")
    stores = [make_store(f"b{trial}", remote=remote_url) for trial in range(count)]

    def trial(number: int) -> tuple[bool, bool]:
        rng = random.Random(7 + number)
        name, b = f"m{number}", stores[number]
        push_killed = _kill_within(a.root, push_s, rng, "push", name)
        assert _ref_content_complete(a, name)
        run_cli(a.root, "push", name)
        assert _ref_content_complete(a, name)
        pull_killed = _kill_within(b.root, pull_s, rng, "pull", name)
        assert validate(b, deep=False).ok
        run_cli(b.root, "pull", name)
        assert validate(b).ok
        return push_killed, pull_killed

    with ThreadPoolExecutor(max_workers=workers) as pool:
        killed = list(pool.map(trial, range(count)))
    # Most kills must land while the command runs, or the trials test nothing.
    assert sum(p for p, _ in killed) >= count // 2, killed
    assert sum(q for _, q in killed) >= count // 2, killed


def test_killed_push_and_pull_resume(make_store, remote_url):
    _trials(make_store, remote_url, 3)


@pytest.mark.slow
def test_killed_push_and_pull_resume_many(make_store, remote_url):
    _trials(make_store, remote_url, 50, workers=4)
