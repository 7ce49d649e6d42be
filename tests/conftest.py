"""Fixtures shared by the whole suite: an isolated environment, workspaces, tiny models.

Every test runs with the Hugging Face client offline and its cache inside the test's own
tmp_path, so nothing reads or writes the developer's real cache or reaches the network.
Tiny model folders are built once per session per shape and copied, since several tests
import the same one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MODELSTORE_ROOT", "MODELSTORE_DEBUG", "MODELSTORE_FAULT", "MODELSTORE_NO_LOCK",
                "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty workspace folder."""
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def workspace(root: Path):
    from registry.workspace import Workspace

    return Workspace.open(root)


@pytest.fixture(scope="session")
def _tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return {"dir": tmp_path_factory.mktemp("tiny-models"), "built": {}}


@pytest.fixture
def tiny_model(_tiny_cache: dict, tmp_path: Path) -> Callable[..., Path]:
    """``tiny_model(model_type="qwen2", name="src", **kwargs)``: a fresh copy of a tiny
    Hugging Face model folder (see ``tests.fixtures.tiny.write_tiny_model`` for kwargs)."""
    from tests.fixtures.tiny import write_tiny_model

    def make(model_type: str = "qwen2", name: str = "src", **kwargs) -> Path:
        key = (model_type, tuple(sorted(kwargs.items())))
        built = _tiny_cache["built"].get(key)
        if built is None:
            tag = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
            built = write_tiny_model(_tiny_cache["dir"] / tag, model_type, **kwargs)
            _tiny_cache["built"][key] = built
        dest = tmp_path / name
        shutil.copytree(built, dest)
        return dest

    return make


def tree_digest(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder``: to prove a source is untouched."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


SETTLED_AGE_S = 3600


def settled(folder: Path) -> Path:
    """Date ``folder`` and every file under it an hour back, as a model that has sat on disk.

    An import trusts what the store remembers of a source file only once the file is older
    than a couple of seconds (``store.sourcecache.RACY_NS``). A model written by the test a
    moment ago crosses that line while the test runs, so whether a re-import re-reads it (and
    rewrites the store's record of it) would depend on the clock; settled sources make a
    command's steps the same in every run."""
    when = os.stat(folder).st_mtime - SETTLED_AGE_S
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            os.utime(path, (when, when))
    return folder

