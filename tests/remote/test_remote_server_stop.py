"""The S3 server dies in the middle of a `push` and of a `pull`: one clear line, a non-zero
exit, no traceback, nothing lost; once the server is back (same data, same ports) the same
command finishes.

The server is the test's own ``weed mini`` (not the session's), SIGKILLed as a crash or a
pulled cable would stop it, once the command has moved some of the model's objects: the
model's two 32 MB embedding blobs go up as multipart uploads, so the command is mid-way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from registry.check.validate import validate
from registry.importer import import_model
from registry.remote.config import add_remote
from registry.workspace import Workspace
from tests.remote.helpers import ROOT, run_cli
from tests.remote.seaweed import ACCESS_KEY, SECRET_KEY, WeedMissingError, client, weed_binary, weed_mini

pytestmark = pytest.mark.slow
PREFIX = "stop"


@pytest.fixture
def env(monkeypatch):
    try:
        weed_binary()
    except WeedMissingError as e:
        pytest.skip(str(e))
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


def _store(root, endpoint, tiny_model=None) -> Workspace:
    root.mkdir()
    ws = Workspace.open(root)
    if tiny_model is not None:
        # 131072 x 64 float32, untied: two 32 MB blobs, four 8 MB parts each.
        src = tiny_model(name="big-src", vocab_size=131072, hidden_size=64, tie_word_embeddings=False,
                         with_tokenizer=False)
        import_model(ws, str(src), name="big", assume_yes=True)
    add_remote(ws, "origin", f"s3://modelstore-test/{PREFIX}", endpoint)
    return ws


def _start(root, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--root", str(root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def _wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert proc.poll() is None, f"the command finished before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.02)


def _one_error_line(proc: subprocess.Popen) -> str:
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], stderr
    return lines[-1]


def test_server_stopped_mid_push_then_mid_pull(env, tmp_path, tiny_model):
    data = tmp_path / "weed"
    with weed_mini(data) as server:
        ports = server.ports
        a = _store(tmp_path / "a", server.endpoint, tiny_model)
        bucket = client(server.endpoint)
        import obstore

        def uploaded() -> bool:
            return any(obstore.list(bucket, prefix=f"{PREFIX}/").collect())

        push = _start(a.root, "push", "big")
        _wait_for(uploaded, push, "a first object on the server")
        server.kill()
        line = _one_error_line(push)
        assert server.endpoint.split("//")[1] in line or "origin" in line, line
    assert validate(a).ok  # the local store is as it was

    with weed_mini(data, ports) as server:
        run_cli(a.root, "push", "big")
        b = _store(tmp_path / "b", server.endpoint)
        objects = b.root / ".modelstore" / "objects"

        def pulled_some() -> bool:
            return objects.is_dir() and any(p.is_dir() and any(p.iterdir()) for p in objects.iterdir())

        pull = _start(b.root, "pull", "big")
        _wait_for(pulled_some, pull, "a first object in the store")
        server.kill()
        line = _one_error_line(pull)
        assert server.endpoint.split("//")[1] in line or "origin" in line, line
    assert validate(b).ok  # what it had pulled is sound; no name registered half-way
    assert "big" not in b.read_registry().models

    with weed_mini(data, ports):
        run_cli(b.root, "pull", "big")
    report = validate(b)
    assert report.ok
    assert b.read_registry().models["big"].manifest == a.read_registry().models["big"].manifest
