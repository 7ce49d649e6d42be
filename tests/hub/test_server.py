"""The fake Hub, exercised by the real ``huggingface_hub`` 2.4.0 client (no mocks).

These tests pin down both halves of the contract the import code relies on: that the server
answers like the Hub, and how the client reacts (which error class, what is retried, what is
verified). When ``huggingface_hub`` is upgraded, a failure here says which assumption moved.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import numpy as np
import pytest
from huggingface_hub import (
    HfApi,
    constants,
    get_hf_file_metadata,
    hf_hub_download,
    list_repo_tree,
    model_info,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.numpy import save as save_safetensors

from .fixtures import hub_cache_dir, hub_server, set_hub_timeouts  # noqa: F401  (fixtures)
from .repos import git_blob_sha1
from .server import HubServer

REPO = "Qwen/Tiny"
WEIGHTS = save_safetensors({"embed.weight": np.arange(48, dtype=np.float32).reshape(12, 4),
                            "norm.weight": np.ones(4, dtype=np.float32)})
FILES = {
    "config.json": json.dumps({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}).encode(),
    "model.safetensors": WEIGHTS,
    "tokenizer.json": b'{"version": "1.0"}',
    "nested/notes.txt": os.urandom(3000),
}


@pytest.fixture
def tiny(hub_server: HubServer) -> str:
    """A small multi-file repo; returns its commit sha."""
    return hub_server.add_repo(REPO, FILES, card_license="apache-2.0", tags=["v1.0"])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_tree(folder: str | Path) -> dict[str, bytes]:
    root = Path(folder)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- downloads -----------------------------------------------------------------------------


def test_snapshot_download_is_plain_http_into_the_isolated_cache(hub_server, tiny, hub_cache_dir):
    hub_server.add_token("hf_reader")
    path = snapshot_download(REPO, token="hf_reader")

    storage = hub_cache_dir / "models--Qwen--Tiny"
    assert Path(path) == storage / "snapshots" / tiny
    assert read_tree(path) == FILES
    assert (storage / "refs" / "main").read_text() == tiny
    # Blobs are named by ETag: sha256 for LFS files, git blob sha1 for the others.
    assert {p.name for p in (storage / "blobs").iterdir()} == {
        sha256(WEIGHTS), *(git_blob_sha1(c) for p, c in FILES.items() if p != "model.safetensors")}

    routes = hub_server.requests.routes()
    assert routes[:2] == ["GET info", "GET tree"]
    assert sorted(routes[2:]) == ["GET cdn"] + ["GET resolve"] * 3 + ["HEAD resolve"] * 4
    assert not [r for r in hub_server.requests if "xet" in r.path]
    # The token goes to the Hub, never to the CDN the LFS bytes are redirected to.
    assert all(r.headers.get("authorization") == "Bearer hf_reader"
               for r in hub_server.requests if r.server == "hub")
    [cdn] = [r for r in hub_server.requests if r.server == "cdn"]
    assert cdn.file == "model.safetensors" and "authorization" not in cdn.headers


def test_single_file_download_fetches_no_weight_bytes(hub_server, tiny):
    config = hf_hub_download(REPO, "config.json")
    assert Path(config).read_bytes() == FILES["config.json"]
    assert hub_server.requests.file_requests("*.safetensors", method="*") == []
    assert hub_server.requests.bytes_served("*.safetensors") == 0
    assert hub_server.requests.bytes_served() == len(FILES["config.json"])


def test_lfs_files_can_be_served_without_redirect(hub_server, tiny):
    hub_server.lfs_redirect = False
    assert read_tree(snapshot_download(REPO)) == FILES
    assert {r.server for r in hub_server.requests} == {"hub"}


def test_local_dir_download(hub_server, tiny, tmp_path):
    out = tmp_path / "out"
    assert Path(snapshot_download(REPO, local_dir=out)) == out
    files = {k: v for k, v in read_tree(out).items() if not k.startswith(".cache/")}
    assert files == FILES


def test_hf_endpoint_in_the_environment_is_enough_for_a_subprocess(hub_server, tiny, tmp_path):
    """What a CLI test does: the variable is set before huggingface_hub is imported."""
    code = "from huggingface_hub import snapshot_download; print(snapshot_download('Qwen/Tiny'))"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), check=True,
                         capture_output=True, text=True, timeout=60)
    path = Path(out.stdout.strip().splitlines()[-1])
    assert path.is_relative_to(tmp_path / "hf_home" / "hub") and read_tree(path) == FILES


def test_explicit_endpoint_argument_works_without_patched_constants(hub_server, tiny, monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        "https://huggingface.co/{repo_id}/resolve/{revision}/{filename}")
    endpoint = os.environ["HF_ENDPOINT"]
    assert HfApi(endpoint=endpoint).model_info(REPO).sha == tiny
    path = snapshot_download(REPO, endpoint=endpoint, cache_dir=tmp_path / "other-cache")
    assert read_tree(path) == FILES


# -- metadata ------------------------------------------------------------------------------


def test_model_info_with_files_metadata(hub_server, tiny):
    info = HfApi().model_info(REPO, files_metadata=True)
    assert info.sha == tiny and info.private is False and info.gated is False
    assert info.card_data.license == "apache-2.0"
    assert info.config == {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}
    assert info.safetensors.total == 52
    siblings = {s.rfilename: s for s in info.siblings}
    assert set(siblings) == set(FILES)
    weights = siblings["model.safetensors"]
    assert (weights.lfs.sha256, weights.lfs.size, weights.size) == (sha256(WEIGHTS), len(WEIGHTS), len(WEIGHTS))
    assert siblings["config.json"].lfs is None
    assert siblings["config.json"].blob_id == git_blob_sha1(FILES["config.json"])
    # Without files_metadata the Hub only lists names; the module-level function is patched too.
    assert model_info(REPO).siblings[0].size is None


def test_list_repo_tree_recursive_and_paginated(hub_server, tiny):
    hub_server.tree_page_size = 2
    entries = {e.path: e for e in list_repo_tree(REPO, recursive=True, expand=True)}
    assert set(entries) == set(FILES) | {"nested"}
    assert entries["model.safetensors"].lfs.sha256 == sha256(WEIGHTS)
    assert entries["config.json"].blob_id == git_blob_sha1(FILES["config.json"])
    assert entries["config.json"].last_commit.oid == tiny
    assert len([r for r in hub_server.requests if r.route == "tree" and "cursor=" in r.path]) == 2
    top = {e.path for e in HfApi().list_repo_tree(REPO)}
    assert top == {"config.json", "model.safetensors", "tokenizer.json", "nested"}
    assert read_tree(snapshot_download(REPO)) == FILES


def test_file_metadata_headers(hub_server, tiny):
    api = HfApi()
    lfs = get_hf_file_metadata(hub_server.file_url(REPO, "model.safetensors"))
    assert (lfs.etag, lfs.size, lfs.commit_hash) == (sha256(WEIGHTS), len(WEIGHTS), tiny)
    assert lfs.location.startswith(hub_server.cdn_endpoint) and lfs.xet_file_data is None
    text = get_hf_file_metadata(hub_server.file_url(REPO, "nested/notes.txt"))
    assert (text.etag, text.size) == (git_blob_sha1(FILES["nested/notes.txt"]), 3000)
    assert api.file_exists(REPO, "config.json") and not api.file_exists(REPO, "nope.json")
    refs = api.list_repo_refs(REPO)
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", tiny)]
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0", tiny)]


def test_range_requests(hub_server, tiny):
    url, size = hub_server.file_url(REPO, "nested/notes.txt"), 3000
    data = FILES["nested/notes.txt"]
    with httpx2.Client() as client:
        head = client.head(url)
        assert head.headers["accept-ranges"] == "bytes" and head.headers["content-length"] == str(size)
        part = client.get(url, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == data[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{size}"
        assert client.get(url, headers={"Range": "bytes=2990-"}).content == data[2990:]
        assert client.get(url, headers={"Range": "bytes=-5"}).content == data[-5:]
        assert client.get(url, headers={"Range": f"bytes={size}-"}).status_code == 416
        weights = client.get(hub_server.file_url(REPO, "model.safetensors"), headers={"Range": "bytes=8-"},
                             follow_redirects=True)
        assert weights.status_code == 206 and weights.content == WEIGHTS[8:]


def test_a_norange_fault_answers_a_range_with_the_whole_file(hub_server, tiny):
    hub_server.faults.add("norange", match="model.safetensors")
    with httpx2.Client() as client:
        whole = client.get(hub_server.file_url(REPO, "model.safetensors"), headers={"Range": "bytes=8-"},
                           follow_redirects=True)
    assert whole.status_code == 200 and whole.content == WEIGHTS and "content-range" not in whole.headers
    assert [r.fault for r in hub_server.requests.file_requests("model.safetensors")][-1] == "norange"


# -- revisions -----------------------------------------------------------------------------


def test_revision_pinning_by_branch_tag_and_sha(hub_server, tiny, hub_cache_dir):
    v2 = hub_server.add_commit(REPO, {"config.json": b'{"v": 2}'}, message="v2")
    dev = hub_server.add_commit(REPO, {"extra.txt": b"dev"}, branch="dev", base="v1.0")
    assert len({tiny, v2, dev}) == 3

    assert Path(snapshot_download(REPO)).name == v2
    assert read_tree(snapshot_download(REPO, revision="v1.0")) == FILES
    assert read_tree(snapshot_download(REPO, revision="dev")) == {**FILES, "extra.txt": b"dev"}
    assert Path(hf_hub_download(REPO, "config.json", revision="main")).read_bytes() == b'{"v": 2}'
    assert (hub_cache_dir / "models--Qwen--Tiny" / "refs" / "v1.0").read_text() == tiny

    hub_server.requests.clear()
    assert read_tree(snapshot_download(REPO, revision=tiny, cache_dir=hub_cache_dir / "fresh")) == FILES
    assert "GET info" not in hub_server.requests.routes()  # a sha needs no resolution
    assert {r.revision for r in hub_server.requests if r.server == "hub"} == {tiny}
    assert HfApi().model_info(REPO, revision="refs/tags/v1.0").sha == tiny


# -- errors --------------------------------------------------------------------------------


def test_gated_repo(hub_server):
    hub_server.add_repo("org/gated", FILES, gated=True, token="hf_granted")
    hub_server.add_token("hf_other")
    assert HfApi().model_info("org/gated").gated == "auto"  # metadata stays public

    with pytest.raises(GatedRepoError) as no_token:
        hf_hub_download("org/gated", "config.json")
    assert no_token.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as not_granted:
        snapshot_download("org/gated", token="hf_other")
    assert not_granted.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as bad_token:
        hf_hub_download("org/gated", "config.json", token="hf_invalid")
    assert bad_token.value.response.status_code == 401
    assert not isinstance(bad_token.value, RepositoryNotFoundError)
    assert read_tree(snapshot_download("org/gated", token="hf_granted")) == FILES


def test_private_and_missing_repos(hub_server):
    hub_server.add_repo("org/private", FILES, private=True, token="hf_owner")
    hub_server.add_token("hf_other")
    for call in (lambda **kw: HfApi().model_info("org/missing", **kw),
                 lambda **kw: hf_hub_download("org/missing", "config.json", **kw),
                 lambda **kw: snapshot_download("org/missing", **kw),
                 lambda **kw: snapshot_download("org/private", **kw)):
        with pytest.raises(RepositoryNotFoundError) as anonymous:
            call()
        assert anonymous.value.response.status_code == 401
        with pytest.raises(RepositoryNotFoundError) as authenticated:
            call(token="hf_other")
        assert authenticated.value.response.status_code == 404
    assert HfApi().model_info("org/private", token="hf_owner").private is True
    assert HfApi().whoami(token="hf_owner")["name"] == "tester"


def test_revision_and_entry_not_found(hub_server, tiny, hub_cache_dir):
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="0" * 40)
    with pytest.raises(RevisionNotFoundError):
        HfApi().model_info(REPO, revision="v9")
    with pytest.raises(RemoteEntryNotFoundError) as missing:
        hf_hub_download(REPO, "missing.bin")
    assert isinstance(missing.value, EntryNotFoundError) and missing.value.response.status_code == 404
    assert (hub_cache_dir / "models--Qwen--Tiny" / ".no_exist" / tiny / "missing.bin").exists()


# -- faults --------------------------------------------------------------------------------


def test_connection_reset_mid_body_is_not_retried(hub_server, tiny, hub_cache_dir):
    drop = hub_server.faults.add("drop", match="model.safetensors")
    with pytest.raises(httpx2.ReadError):  # raw httpx2 error: http_get only retries timeouts,
        snapshot_download(REPO)            # ConnectError and RemoteProtocolError
    assert drop.fired == 1
    assert not list(hub_cache_dir.rglob("*.incomplete"))  # the temp file is removed on failure
    assert read_tree(snapshot_download(REPO)) == FILES


def test_truncated_body_is_downloaded_again(hub_server, tiny):
    hub_server.faults.add("short", match="model.safetensors")
    assert Path(hf_hub_download(REPO, "model.safetensors")).read_bytes() == WEIGHTS
    gets = hub_server.requests.file_requests("model.safetensors")
    assert [(g.status, g.fault, g.range) for g in gets] == [(200, "short", None), (200, None, None)]


def test_truncated_big_file_resumes_with_range(hub_server):
    """Resume needs a full 10 MiB chunk on disk: the client reads in DOWNLOAD_CHUNK_SIZE chunks."""
    big = os.urandom(constants.DOWNLOAD_CHUNK_SIZE + 1024 * 1024)
    hub_server.add_repo("org/big", {"weights.dat": big})  # LFS because > 10 MB
    hub_server.faults.add("short", after_bytes=len(big) - 512 * 1024)
    assert Path(hf_hub_download("org/big", "weights.dat")).read_bytes() == big
    first, second = hub_server.requests.file_requests("weights.dat")
    assert second.range == f"bytes={constants.DOWNLOAD_CHUNK_SIZE}-" and second.status == 206


def test_wrong_bytes_of_the_right_length_pass_the_client(hub_server, tiny):
    """huggingface_hub only checks sizes: hash verification is the caller's job."""
    hub_server.faults.add("corrupt", match="model.safetensors")
    hub_server.faults.add("corrupt", match="config.json")
    path = snapshot_download(REPO)
    assert sha256(Path(path, "model.safetensors").read_bytes()) != sha256(WEIGHTS)
    check = HfApi().verify_repo_checksums(REPO, revision=tiny, cache_dir=constants.HF_HUB_CACHE)
    assert {(m["path"], m["algorithm"]) for m in check.mismatches} == {
        ("model.safetensors", "sha256"), ("config.json", "git-sha1")}


def test_stalled_download_is_bounded_by_the_download_timeout(hub_server, tiny, monkeypatch):
    set_hub_timeouts(monkeypatch, download=0.5)
    hub_server.faults.add("stall", match="model.safetensors", after_bytes=100, seconds=10)
    start = time.monotonic()
    assert Path(hf_hub_download(REPO, "model.safetensors")).read_bytes() == WEIGHTS
    assert time.monotonic() - start < 4  # 0.5 s read timeout + 1 s retry pause, not 10 s
    assert [r.fault for r in hub_server.requests.file_requests("model.safetensors")] == ["stall", None]


def test_stalled_metadata_is_bounded_by_the_etag_timeout(hub_server, tiny, monkeypatch):
    set_hub_timeouts(monkeypatch, etag=0.5)
    hub_server.faults.add("stall", method="HEAD", match="config.json", seconds=10)
    start = time.monotonic()
    hf_hub_download(REPO, "config.json")
    assert time.monotonic() - start < 3  # the second HEAD (60 s timeout, hard-coded) answers


def test_stalled_api_call_needs_an_explicit_timeout(hub_server, tiny):
    hub_server.faults.add("stall", target="info", seconds=10)
    start = time.monotonic()
    with pytest.raises(httpx2.ReadTimeout):
        HfApi().model_info(REPO, timeout=0.5)  # default timeout=None would wait the full 10 s
    assert time.monotonic() - start < 3


def test_http_500_on_download_is_raised_then_a_retry_succeeds(hub_server, tiny):
    hub_server.faults.add("status", status=500, match="config.json")
    with pytest.raises(HfHubHTTPError) as error:
        hf_hub_download(REPO, "config.json")
    assert error.value.response.status_code == 500
    assert Path(hf_hub_download(REPO, "config.json")).read_bytes() == FILES["config.json"]


def test_http_500_on_the_third_file_fails_the_snapshot_and_a_rerun_completes_it(hub_server, tiny):
    fault = hub_server.faults.add("status", skip=2)
    with pytest.raises(HfHubHTTPError):
        snapshot_download(REPO, max_workers=1)
    [failed] = [r.file for r in hub_server.requests if r.fault == "status"]
    hub_server.requests.clear()
    assert read_tree(snapshot_download(REPO)) == FILES
    assert fault.fired == 1
    assert {r.file for r in hub_server.requests.file_requests(method="GET")} == {failed}


def test_http_500_on_the_api_turns_snapshot_download_into_a_cache_lookup(hub_server, tiny):
    """snapshot_download treats any API error but 401/not-found/gated as "offline"."""
    hub_server.faults.add("status", target="info", status=503)
    with pytest.raises(LocalEntryNotFoundError) as offline:
        snapshot_download(REPO)
    assert isinstance(offline.value.__cause__, HfHubHTTPError)
    assert offline.value.__cause__.response.status_code == 503


def test_http_500_on_metadata_is_retried(hub_server, tiny):
    hub_server.faults.add("status", method="HEAD", match="model.safetensors")
    assert Path(hf_hub_download(REPO, "model.safetensors")).read_bytes() == WEIGHTS
    heads = [r.status for r in hub_server.requests.file_requests("model.safetensors", method="HEAD")]
    assert heads == [500, 302]


def test_fault_plan_rejects_nonsense():
    with pytest.raises(ValueError):
        HubServer().faults.add("explode")
    with pytest.raises(ValueError):
        HubServer().faults.add("drop", target="info")
