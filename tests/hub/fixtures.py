"""pytest fixtures pointing the real ``huggingface_hub`` client at a local :class:`HubServer`.

Use from ``tests/conftest.py`` (this is a plain module so that file stays yours)::

    from tests.hub.fixtures import hub_server, hub_cache_dir  # noqa: F401  (re-exported fixtures)

    def test_import(hub_server, tmp_path):
        sha = hub_server.add_repo("Qwen/Tiny", {"config.json": "{}", "model.safetensors": b"..."})
        ...  # product code calls snapshot_download("Qwen/Tiny") and reaches hub_server

Why it patches module attributes and not just the environment: ``huggingface_hub`` 2.4.0
reads its settings once, in ``huggingface_hub/constants.py``, at import time
(``ENDPOINT = os.getenv("HF_ENDPOINT", ...)``, ``HUGGINGFACE_CO_URL_TEMPLATE`` built from it,
``HF_HUB_CACHE``, ``HF_TOKEN_PATH``, ``HF_HUB_OFFLINE``, timeouts...). By the time a test runs,
the package is imported, so ``monkeypatch.setenv("HF_ENDPOINT", ...)`` alone changes nothing
in this process. What the client consults at call time:

* ``constants.ENDPOINT``: ``HfApi()`` (``self.endpoint = endpoint or constants.ENDPOINT`` in
  ``__init__``) and thus ``snapshot_download``'s ``repo_info``/``list_repo_tree``;
* ``constants.HUGGINGFACE_CO_URL_TEMPLATE``: ``hf_hub_url``, hence every ``/resolve`` HEAD/GET
  of ``hf_hub_download`` (patching ``ENDPOINT`` alone still downloads from huggingface.co);
* ``huggingface_hub.hf_api.api.endpoint``: the module-level ``HfApi`` created at import, behind
  ``huggingface_hub.model_info``/``list_repo_tree``/... free functions;
* ``huggingface_hub.utils._cache_manager.HF_HUB_CACHE`` (``scan_cache_dir`` default), copied by value.

So :func:`point_hf_client_at` patches all of those *and* sets the environment variables, which
is what a subprocess (``python main.py import-model ...``) needs: there the variables are set
before the import, which is the one fully supported way. For product code this means: never
copy ``constants.ENDPOINT`` or build an ``HfApi()`` at import time; create ``HfApi()`` per call
(or pass ``endpoint=os.environ.get("HF_ENDPOINT")`` explicitly, which ``hf_hub_download``,
``snapshot_download`` and ``HfApi`` all accept and which also works here).

Timeouts (``HF_HUB_DOWNLOAD_TIMEOUT`` for the file GET, ``HF_HUB_ETAG_TIMEOUT`` for the
metadata HEAD, default 10 s) are import-time constants too: use :func:`set_hub_timeouts`.
Their environment variables are parsed with ``int()``: a subprocess gets whole seconds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .server import HubServer

# Variables that would leak the developer's real token/cache/settings into a test.
_CLEARED_ENV = (
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN", "HUGGINGFACE_CO_STAGING",
    "TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE", "HUGGINGFACE_ASSETS_CACHE", "HF_HUB_ETAG_TIMEOUT",
    "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ENABLE_HF_TRANSFER", "HF_HUB_DISABLE_IMPLICIT_TOKEN",
)


def point_hf_client_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: Path) -> None:
    """Send every ``huggingface_hub`` call of this process (and of subprocesses) to ``endpoint``.

    Also isolates the cache, token and config under ``hf_home``, forces online mode and turns
    telemetry off. Undone by ``monkeypatch`` at test teardown.
    """
    import huggingface_hub.hf_api as hf_api
    import huggingface_hub.utils._cache_manager as cache_manager
    from huggingface_hub import constants
    from huggingface_hub.utils import close_session

    hf_home = Path(hf_home)
    paths = {
        "HF_HOME": hf_home, "HF_HUB_CACHE": hf_home / "hub", "HF_ASSETS_CACHE": hf_home / "assets",
        "HF_XET_CACHE": hf_home / "xet", "HF_TOKEN_PATH": hf_home / "token",
    }
    for name in _CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    env = {name: str(path) for name, path in paths.items()}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_UPDATE_CHECK="1")
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    env.update(NO_PROXY=no_proxy, no_proxy=no_proxy)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    constant_values = {name: str(path) for name, path in paths.items()}
    constant_values.update(
        ENDPOINT=endpoint,
        HUGGINGFACE_CO_URL_TEMPLATE=endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        HUGGINGFACE_HUB_CACHE=str(paths["HF_HUB_CACHE"]),
        HUGGINGFACE_ASSETS_CACHE=str(paths["HF_ASSETS_CACHE"]),
        HF_STORED_TOKENS_PATH=str(hf_home / "stored_tokens"),
        HF_HUB_OFFLINE=False,
        HF_HUB_DISABLE_TELEMETRY=True,
        HF_HUB_DISABLE_IMPLICIT_TOKEN=False,
        HF_HUB_ETAG_TIMEOUT=constants.DEFAULT_ETAG_TIMEOUT,
        HF_HUB_DOWNLOAD_TIMEOUT=constants.DEFAULT_DOWNLOAD_TIMEOUT,
    )
    for name, value in constant_values.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    monkeypatch.setattr(cache_manager, "HF_HUB_CACHE", str(paths["HF_HUB_CACHE"]))
    # The shared httpx2 client read proxy settings when created, and pools connections to
    # servers of earlier tests: start from a fresh one.
    close_session()


def set_hub_timeouts(monkeypatch: pytest.MonkeyPatch, *, download: float | None = None,
                     etag: float | None = None) -> None:
    """Shorten the client's read timeouts (seconds): ``download`` for file GETs, ``etag`` for HEADs.

    ``HfApi`` calls (``model_info``, ``repo_info``, ``list_repo_tree``) are not covered: they
    default to no timeout at all (pass ``timeout=`` to ``model_info``/``repo_info``).
    """
    from huggingface_hub import constants

    for value, constant in ((download, "HF_HUB_DOWNLOAD_TIMEOUT"), (etag, "HF_HUB_ETAG_TIMEOUT")):
        if value is not None:
            monkeypatch.setattr(constants, constant, value)
            monkeypatch.setenv(constant, str(max(1, math.ceil(value))))  # env is parsed with int()


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A started :class:`HubServer`, with ``huggingface_hub`` pointed at it.

    The client's cache and token live under ``tmp_path / "hf_home"`` (see ``hub_cache_dir``);
    no token is set. Fails the test at teardown if the server itself hit a bug.
    """
    from huggingface_hub.utils import close_session

    with HubServer() as server:
        point_hf_client_at(monkeypatch, server.endpoint, tmp_path / "hf_home")
        yield server
        close_session()
    assert not server.errors, "fake Hub bug:\n" + "\n".join(server.errors)


@pytest.fixture
def hub_cache_dir(hub_server: HubServer) -> Path:
    """The ``huggingface_hub`` cache folder (``HF_HUB_CACHE``) used while ``hub_server`` runs."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)
