"""SIGKILL a `python main.py push` / `pull` mid-way, then run it again: it completes, the
remote never has a ref to missing content, and the local store stays valid."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from registry.check.validate import validate
from registry.remote.config import open_remote
from store.remote.objects import object_key
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


def _trials(make_store, remote_url, count):
    a = make_store("a", {"tiny": 1}, remote=remote_url)
    rng = random.Random(7)
    for trial in range(count):
        b = make_store(f"b{trial}", remote=remote_url)
        name = f"t{trial}"
        from registry.ops import register
        entry = a.read_registry().models["tiny"]
        register(a, name, entry.manifest, a.manifest(entry.manifest))
        proc = _start(a.root, "push", name)
        time.sleep(rng.uniform(0.2, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _ref_content_complete(a, name)
        run_cli(a.root, "push", name)
        assert _ref_content_complete(a, name)
        proc = _start(b.root, "pull", name)
        time.sleep(rng.uniform(0.2, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert validate(b, deep=False).ok
        run_cli(b.root, "pull", name)
        assert validate(b).ok


def test_killed_push_and_pull_resume(make_store, remote_url):
    _trials(make_store, remote_url, 3)


@pytest.mark.slow
def test_killed_push_and_pull_resume_many(make_store, remote_url):
    _trials(make_store, remote_url, 50)
