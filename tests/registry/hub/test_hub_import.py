"""Importing from the Hub: the real huggingface_hub client against the fake Hub (tests/hub/).

Every test publishes tiny models on the local server and imports them through the same code
path as ``python main.py import-model``. Failures are injected by the server; after each one
the store must hold no registry entry and no temp file, and a re-run must succeed reusing
the blobs already stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest

from registry.hub.importer import HubImportResult, import_from_hub
from registry.hub.license import LicenseInfo
from registry.report import RecordingReporter
from adapters.errors import UnsupportedArchitectureError
from registry.errors import Aborted, LicenseNotAcknowledgedError, ModelExistsError, ModelLoadError
from registry.hub.errors import (
    HubAuthError,
    HubDownloadError,
    HubError,
    HubGatedRepoError,
    HubIntegrityError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    HubUnsafePathError,
)
from store.fs import faults
from store.errors import PickleWeightsError, SafetensorsError, StoreIOError
from store.manifest import HubOrigin
from tests.hub.fixtures import hub_cache_dir, hub_server, set_hub_timeouts  # noqa: F401  (fixtures)

REPO = "Qwen/Tiny"


def publish(hub, tiny_model, model_type="qwen2", repo=REPO, **kwargs):
    """Publish a fresh tiny model folder as ``repo``; returns (folder, commit sha)."""
    repo_keys = ("gated", "private", "token", "card_license", "card_data", "tags")
    repo_options = {k: kwargs.pop(k) for k in repo_keys if k in kwargs}
    repo_options.setdefault("card_license", "apache-2.0")
    folder = tiny_model(model_type, name=f"src-{model_type}-{repo.replace('/', '-')}", **kwargs)
    return folder, hub.add_repo(repo, folder, **repo_options)


def run_import(workspace, source=REPO, **kwargs) -> HubImportResult:
    kwargs.setdefault("assume_yes", True)
    return import_from_hub(workspace, source, **kwargs)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weight_requests(hub) -> list:
    return hub.requests.file_requests("*.safetensors", method="*")


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    """Range retries wait 10 ms here, not 0.5 s and more, and give up after 2 tries."""
    monkeypatch.setenv("MODELSTORE_HUB_BACKOFF_S", "0.01")
    monkeypatch.setenv("MODELSTORE_HUB_RETRIES", "2")


def assert_store_clean(workspace) -> None:
    """What validate-registry would find after a failed import: nothing registered, no temp
    file but the partial downloads kept for the next run (``hubpart-*``), no staging folder,
    and every object that exists hashes to its name."""
    assert workspace.read_registry().models == {}
    tmp = workspace.layout.tmp
    assert not tmp.exists() or [n for n in sorted(os.listdir(tmp)) if not n.startswith("hubpart-")] == []
    if workspace.models_dir.exists():
        assert [p.name for p in workspace.models_dir.iterdir() if p.name != "registry.json"] == []
    for digest, _ in workspace.layout.iter_object_paths():
        assert workspace.objects.rehash(digest) == digest


# --- happy paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["qwen2", "qwen2_moe", "qwen3", "qwen3_moe"])
def test_each_supported_architecture_imports_verified_and_pinned(workspace, hub_server, tiny_model,
                                                                  model_type):
    folder, commit = publish(hub_server, tiny_model, model_type)
    reporter = RecordingReporter()
    result = run_import(workspace, reporter=reporter)

    assert result.entry.model_name == "Tiny" and result.entry.source == "huggingface"
    assert result.commit == commit and result.revision == "main"
    manifest = result.manifest
    assert manifest.architecture_type == model_type and manifest.license == "apache-2.0"
    origin = manifest.origin
    assert isinstance(origin, HubOrigin)
    assert (origin.endpoint, origin.repo_id) == (hub_server.endpoint, REPO)
    assert (origin.revision, origin.commit) == ("main", commit)
    assert origin.files["model.safetensors"].sha256 == sha256(folder / "model.safetensors")
    assert origin.files["model.safetensors"].git_oid is None
    assert sorted(origin.files["model.safetensors"].tensors) == sorted(manifest.tensors)
    config_bytes = (folder / "config.json").read_bytes()
    git_blob = b"blob %d\0" % len(config_bytes) + config_bytes
    assert origin.files["config.json"].git_oid == hashlib.sha1(git_blob).hexdigest()
    assert origin.files["config.json"].sha256 is None
    assert (workspace.root / "models/Tiny/config.json").read_bytes() == config_bytes
    assert result.load_check.ran and "finite logits" in result.load_check.detail
    assert workspace.read_registry().models["Tiny"].metadata["license"] == "apache-2.0"
    # Every request after the listing is pinned to the commit, never to "main".
    resolves = [r for r in hub_server.requests if r.route == "resolve"]
    assert resolves and {r.revision for r in resolves} == {commit}
    components = [c for c, _ in reporter.lines]
    for expected in ("hub", "license", "weights", "config", "tokenizer", "verify"):
        assert expected in components
    assert sorted(os.listdir(workspace.layout.tmp)) == []


def test_view_logits_match_the_published_folder(workspace, hub_server, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    folder, _ = publish(hub_server, tiny_model, "qwen3", dtype="bfloat16")
    run_import(workspace, name="q3")
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        ours = AutoModelForCausalLM.from_pretrained(workspace.root / "models/q3")(tokens).logits
        theirs = AutoModelForCausalLM.from_pretrained(folder)(tokens).logits
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, theirs)


def test_sharded_weights_download_in_parallel_into_blobs_with_one_progress_bar(workspace, hub_server, tiny_model,
                                                                                monkeypatch):
    from huggingface_hub import constants

    folder, _ = publish(hub_server, tiny_model, shards=3)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1000)  # many chunks per shard, to watch between
    monkeypatch.setenv("MODELSTORE_HUB_RANGE_MB", str(16_000 / (1 << 20)))  # several ranges per shard
    bars, during = [], []

    def temp_files() -> dict[str, int]:
        found = {}
        for path in workspace.layout.tmp.iterdir():
            try:
                found[path.name] = path.stat().st_size
            except FileNotFoundError:  # published or dropped meanwhile, by the thread writing blobs
                pass
        return found

    class Watching(RecordingReporter):
        def progress_bar(self):
            from huggingface_hub.utils import tqdm

            class Bar(tqdm):
                def __init__(self, *args, **kwargs):
                    bars.append(kwargs.get("total"))
                    kwargs["disable"] = True
                    super().__init__(*args, **kwargs)

                def update(self, n=1):
                    during.append(temp_files())
                    return super().update(n)

            return Bar

    reporter = Watching()
    shards = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    result = run_import(workspace, reporter=reporter)
    # One bar for the whole import, over every weight byte.
    assert bars == [sum((folder / shard).stat().st_size for shard in shards)]
    ranged = [r for r in hub_server.requests.file_requests("*.safetensors") if r.server == "cdn"]
    assert {r.file for r in ranged} == set(shards) and all(r.status in (200, 206) for r in ranged)
    assert len(ranged) > len(shards)
    # While shards download, tmp holds their partials and their tensors' blobs; no temp blob
    # is bigger than the biggest tensor blob.
    tensors = result.manifest.tensors
    biggest_blob = max(t.blob_size(n) for n, t in tensors.items())
    blobs = [size for seen in during for name, size in seen.items() if name.startswith("obj-")]
    assert blobs and max(blobs) <= biggest_blob
    assert all(name.startswith(("obj-", "hubpart-")) for seen in during for name in seen)
    assert "model.safetensors.index.json" not in result.manifest.files
    assert set(result.manifest.origin.files) >= set(shards)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert set(result.manifest.tensors) == set(index["weight_map"])
    for shard in shards:
        assert any(line.startswith(f"{shard}: ") and "sha256 verified" in line for _, line in reporter.lines)
        assert result.manifest.origin.files[shard].sha256 == sha256(folder / shard)
    assert sorted(os.listdir(workspace.layout.tmp)) == []


# --- revisions and sources -------------------------------------------------------------------


def test_revision_branch_tag_and_commit_are_resolved_and_recorded(workspace, hub_server, tiny_model):
    folder, first = publish(hub_server, tiny_model, tags=["v1"])
    generation = json.loads((folder / "generation_config.json").read_text())
    second = hub_server.add_commit(REPO, {"generation_config.json": json.dumps({**generation, "top_k": 7})},
                                   branch="dev", base=first)
    cases = {"dev": second, "v1": first, first: first, "main": first}
    for i, (revision, commit) in enumerate(cases.items()):
        hub_server.requests.clear()
        result = run_import(workspace, revision=revision, name=f"tiny-{i}")
        assert (result.manifest.origin.revision, result.manifest.origin.commit) == (revision, commit)
        assert {r.revision for r in hub_server.requests if r.route == "resolve"} <= {commit}
        generation_now = json.loads((workspace.root / f"models/tiny-{i}/generation_config.json").read_text())
        assert generation_now.get("top_k") == (7 if commit == second else generation.get("top_k"))
    with pytest.raises(HubRevisionNotFoundError, match="has no branch, tag or commit 'nope'"):
        run_import(workspace, revision="nope", name="x")


def test_url_forms(workspace, hub_server, tiny_model):
    _, first = publish(hub_server, tiny_model, tags=["v1"])
    # huggingface.co names the repo; the bytes come from the configured endpoint (HF_ENDPOINT).
    by_url = run_import(workspace, "https://huggingface.co/Qwen/Tiny/tree/v1", name="a")
    assert (by_url.manifest.origin.revision, by_url.commit) == ("v1", first)
    by_uri = run_import(workspace, "hf://Qwen/Tiny@v1", name="b")
    assert by_uri.commit == first
    # A URL on another host names that host as the endpoint.
    by_host = run_import(workspace, f"{hub_server.endpoint}/Qwen/Tiny", name="c")
    assert by_host.manifest.origin.endpoint == hub_server.endpoint
    assert by_host.entry.model_name == "c" and by_host.manifest.model_id == REPO


def test_unknown_repo_and_rejected_token_are_distinct_errors(workspace, hub_server, tiny_model):
    publish(hub_server, tiny_model)
    with pytest.raises(HubRepoNotFoundError) as missing:
        run_import(workspace, "Qwen/Nope")
    assert "repo 'Qwen/Nope' was not found" in str(missing.value) and "--token" in str(missing.value)
    hub_server.add_token("hf_valid")
    with pytest.raises(HubRepoNotFoundError) as missing_with_token:
        run_import(workspace, "Qwen/Nope", token="hf_valid")
    assert "your token has access" in str(missing_with_token.value)
    with pytest.raises(HubAuthError) as rejected:
        run_import(workspace, token="hf_forged")
    assert "rejected the token from --token" in str(rejected.value)
    assert weight_requests(hub_server) == []
    assert_store_clean(workspace)


def test_refused_connection_and_offline_mode_are_one_clear_line(workspace, hub_server, monkeypatch):
    from huggingface_hub import constants

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    with pytest.raises(HubDownloadError) as info:
        run_import(workspace, f"http://127.0.0.1:{port}/Qwen/Tiny")
    assert f"cannot connect to the Hub at http://127.0.0.1:{port}" in str(info.value)
    assert "\n" not in str(info.value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set, so the Hub is not contacted; unset"):
        run_import(workspace)
    assert_store_clean(workspace)


# --- access ------------------------------------------------------------------------------------


def test_gated_repo_without_a_token_says_what_to_do(workspace, hub_server, tiny_model):
    publish(hub_server, tiny_model, gated=True, token="hf_granted")
    with pytest.raises(HubGatedRepoError) as info:
        run_import(workspace)
    message = str(info.value)
    assert "gated" in message and f"{hub_server.endpoint}/{REPO}" in message and "--token" in message
    assert weight_requests(hub_server) == []
    hub_server.add_token("hf_ungranted")
    with pytest.raises(HubGatedRepoError, match="has not been granted access"):
        run_import(workspace, token="hf_ungranted")
    assert_store_clean(workspace)


def test_gated_repo_with_token_flag_env_login_or_prompt(workspace, hub_server, tiny_model, monkeypatch):
    from huggingface_hub import constants

    publish(hub_server, tiny_model, gated=True, token="hf_granted")
    assert run_import(workspace, token="hf_granted", name="flag").entry.model_name == "flag"
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    assert run_import(workspace, name="env").entry.model_name == "env"
    monkeypatch.delenv("HF_TOKEN")
    login_file = Path(constants.HF_TOKEN_PATH)
    login_file.parent.mkdir(parents=True, exist_ok=True)
    login_file.write_text("hf_granted")  # what `hf auth login` saves
    assert run_import(workspace, name="login").entry.model_name == "login"
    login_file.unlink()

    asked = []
    result = run_import(workspace, name="prompted", ask_token=lambda repo, page: asked.append((repo, page))
                        or "hf_granted")
    assert asked == [(REPO, f"{hub_server.endpoint}/{REPO}")] and result.entry.model_name == "prompted"
    with pytest.raises(HubGatedRepoError):
        run_import(workspace, name="declined", ask_token=lambda repo, page: "")
    cdn = [r for r in hub_server.requests if r.server == "cdn"]
    assert all("authorization" not in r.headers for r in cdn)  # the token never leaves the Hub's origin


def test_private_repo_needs_a_token(workspace, hub_server, tiny_model):
    publish(hub_server, tiny_model, private=True, token="hf_owner")
    with pytest.raises(HubRepoNotFoundError, match="if the repo is private, pass --token"):
        run_import(workspace)
    assert run_import(workspace, token="hf_owner").entry.model_name == "Tiny"


# --- refusals before any weight byte ------------------------------------------------------------


def test_unsupported_architecture_fetches_no_weight_byte(workspace, hub_server, tiny_model):
    folder = tiny_model()
    config = json.loads((folder / "config.json").read_text())
    hub_server.add_repo(REPO, {**{p.name: p for p in folder.iterdir()},
                               "config.json": json.dumps({**config, "model_type": "llama"})})
    with pytest.raises(UnsupportedArchitectureError) as info:
        run_import(workspace)
    assert "unsupported architecture 'llama'" in str(info.value)
    assert ("qwen2, qwen2_5_vl, qwen2_moe, qwen2_vl, qwen3, qwen3_5, qwen3_5_moe, qwen3_5_moe_text, "
            "qwen3_5_text, qwen3_moe, qwen3_next, qwen3_vl, qwen3_vl_moe") in str(info.value)
    assert weight_requests(hub_server) == [] and hub_server.requests.bytes_served("*.safetensors") == 0
    assert [r.file for r in hub_server.requests.file_requests()] == ["config.json"]
    assert_store_clean(workspace)


def test_pickle_only_repo_is_refused_without_fetching_anything(workspace, hub_server, tiny_model):
    folder = tiny_model()
    hub_server.add_repo(REPO, {"config.json": folder / "config.json", "pytorch_model.bin": b"\x80\x04pickle"})
    with pytest.raises(PickleWeightsError, match="pytorch_model.bin holds pickle weights and no safetensors"):
        run_import(workspace)
    assert hub_server.requests.file_requests(method="*") == []
    assert_store_clean(workspace)


def test_pickle_remote_code_and_subfolders_are_never_fetched(workspace, hub_server, tiny_model):
    folder = tiny_model()
    hub_server.add_repo(REPO, {**{p.name: p for p in folder.iterdir()}, "pytorch_model.bin": b"\x80\x04x",
                               "modeling_evil.py": "import os; os.system('touch PWNED')",
                               "sub/notes.md": "hi", ".gitattributes": "*.bin filter=lfs"},
                        card_license="mit")
    reporter = RecordingReporter()
    result = run_import(workspace, reporter=reporter)
    fetched = {r.file for r in hub_server.requests.file_requests(method="*")}
    assert fetched.isdisjoint({"pytorch_model.bin", "modeling_evil.py", "sub/notes.md", ".gitattributes"})
    assert result.skipped["modeling_evil.py"] == "remote code is never run"
    assert ("warning", "skipped pytorch_model.bin: pickle weights are never loaded") in reporter.lines
    assert sorted(p.name for p in (workspace.root / "models/Tiny").iterdir()) == sorted(
        ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
         "model.safetensors.index.json", "metadata.json",
         *(f"tensor-{name}.safetensors" for name in result.manifest.tensors)])


@pytest.mark.parametrize("path, problem", [
    ("../escape.json", "it has an empty, '.' or '..' component"),
    (".git/config", "it is inside .git"),
    ("/etc/x", "it is absolute"),
    ("C:\\x", "it is absolute"),
    ("..\\x", "it contains a backslash"),
    ("a/../../b", "it has an empty, '.' or '..' component"),
])
def test_a_hostile_path_in_the_listing_refuses_the_repo_before_any_download(workspace, hub_server, tiny_model,
                                                                          path, problem):
    folder = tiny_model()
    hub_server.add_repo(REPO, {**{p.name: p for p in folder.iterdir()}, path: "{}"}, card_license="mit",
                        raw_paths=True)
    with pytest.raises(HubUnsafePathError) as info:
        run_import(workspace)
    assert (info.value.path, info.value.problem) == (path, problem)
    assert f"lists the unsafe file path {path!r} ({problem})" in str(info.value)
    assert hub_server.requests.file_requests(method="*") == []
    assert_store_clean(workspace)


def test_not_enough_disk_space_is_refused_before_downloading(workspace, hub_server, tiny_model, monkeypatch):
    import registry.ingest.folder as importer

    publish(hub_server, tiny_model)
    monkeypatch.setattr(importer, "free_bytes", lambda p: 1000)
    with pytest.raises(StoreIOError) as info:
        run_import(workspace)
    assert "needed but 1.0 KB free" in str(info.value) and "free some disk space" in str(info.value)
    assert weight_requests(hub_server) == []
    assert_store_clean(workspace)


# --- license -------------------------------------------------------------------------------------


def test_license_must_be_acknowledged(workspace, hub_server, tiny_model):
    publish(hub_server, tiny_model)
    with pytest.raises(LicenseNotAcknowledgedError) as info:
        run_import(workspace, assume_yes=False)
    assert str(info.value) == ("Qwen/Tiny is published under the license 'apache-2.0', which must be "
                               "acknowledged before import; pass --yes to acknowledge it (or run the command "
                               "in a terminal to be asked)")
    assert info.value.exit_code == 2
    shown: list[LicenseInfo] = []
    with pytest.raises(Aborted, match="not acknowledged"):
        run_import(workspace, assume_yes=False, confirm_license=lambda lic: shown.append(lic) or False)
    assert (shown[0].label, shown[0].source) == ("apache-2.0", "model card")
    assert weight_requests(hub_server) == []
    assert_store_clean(workspace)
    accepted = run_import(workspace, assume_yes=False, confirm_license=lambda lic: True)
    assert accepted.manifest.license == "apache-2.0"


def test_license_file_and_card_details(workspace, hub_server, tiny_model):
    folder = tiny_model()
    files = {p.name: p for p in folder.iterdir()}
    hub_server.add_repo("org/from-file", {**files, "LICENSE": "MIT License\n\nCopyright (c) 2024 Someone\n"})
    shown = []
    result = run_import(workspace, "org/from-file", assume_yes=False,
                        confirm_license=lambda lic: shown.append(lic) or True)
    assert result.manifest.license == "MIT License" and shown[0].source == "LICENSE file"
    assert "Copyright (c) 2024 Someone" in shown[0].text
    assert (workspace.root / "models/from-file/LICENSE").read_text().startswith("MIT License")

    hub_server.add_repo("org/other", files, card_data={"license": "other", "license_name": "qwen-research",
                                                       "license_link": "LICENSE"})
    other = run_import(workspace, "org/other")
    assert other.manifest.license == "qwen-research (other)"
    assert other.license.link == f"{hub_server.endpoint}/org/other/blob/{other.commit}/LICENSE"

    hub_server.add_repo("org/none", files)
    with pytest.raises(LicenseNotAcknowledgedError, match="declares no license"):
        run_import(workspace, "org/none", assume_yes=False)
    assert run_import(workspace, "org/none").manifest.license is None


# --- duplicate names ------------------------------------------------------------------------------


def test_duplicate_name_cancel_rename_overwrite_and_ask(workspace, hub_server, tiny_model):
    publish(hub_server, tiny_model)
    first = run_import(workspace)
    hub_server.requests.clear()
    # The same repo at the same commit under the same name: a no-op, so a re-run is harmless.
    again = run_import(workspace)
    assert again.entry == first.entry and weight_requests(hub_server) == []
    # Another commit of the same repo under a taken name: refused before any weight byte.
    hub_server.add_commit(REPO, {"README.md": b"---\nlicense: apache-2.0\n---\nv2\n"})
    hub_server.requests.clear()
    with pytest.raises(ModelExistsError, match="already registered"):
        run_import(workspace)
    assert weight_requests(hub_server) == []
    assert run_import(workspace, on_conflict="rename").entry.model_name == "Tiny-2"
    other, _ = publish(hub_server, tiny_model, "qwen3", repo="Qwen/Other")
    replaced = run_import(workspace, "Qwen/Other", name="Tiny", on_conflict="overwrite")
    assert replaced.manifest_digest != first.manifest_digest
    assert workspace.read_registry().models["Tiny"].manifest == replaced.manifest_digest
    asked = []
    chosen = run_import(workspace, on_conflict=lambda n: asked.append(n) or "rename")
    assert asked == ["Tiny"] and chosen.entry.model_name == "Tiny-3"


def test_reimport_downloads_no_weight_already_stored(workspace, hub_server, tiny_model):
    publish(hub_server, tiny_model, shards=2)
    run_import(workspace, name="one")
    hub_server.requests.clear()
    again = run_import(workspace, name="two")
    assert weight_requests(hub_server) == []
    assert sorted(again.from_store) == [f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    assert again.stats.new_objects == 0 and again.manifest.tensors == workspace.manifest(
        workspace.read_registry().models["one"].manifest).tensors


def test_a_new_revision_writes_only_the_tensors_it_changed(workspace, hub_server, tiny_model, monkeypatch,
                                                           tmp_path):
    """The changed shard is downloaded whole, but a tensor the store holds is hashed in memory
    and dropped: no temp blob, no write; only the changed tensor becomes a new blob."""
    from safetensors.torch import load_file, save

    folder, _ = publish(hub_server, tiny_model)
    run_import(workspace, name="v1")
    weights = load_file(folder / "model.safetensors")
    changed = "model.norm.weight"
    weights[changed] = weights[changed] + 1
    hub_server.add_commit(REPO, {"model.safetensors": save(weights, metadata={"format": "pt"})})
    before = {d for d, _ in workspace.layout.iter_object_paths()}
    counting_steps(monkeypatch, tmp_path / "steps.log")
    second = run_import(workspace, name="v2")
    written = {name for name, t in second.manifest.tensors.items() if t.digest not in before}
    assert written == {changed} and second.stats.new_objects == 1
    assert temp_blobs_created(tmp_path / "steps.log") == 2  # that tensor, and the manifest
    assert second.downloaded_bytes >= (folder / "model.safetensors").stat().st_size


# --- the local Hugging Face cache ------------------------------------------------------------------


def test_files_in_the_hf_cache_at_the_same_commit_are_not_downloaded(workspace, hub_server, hub_cache_dir,
                                                                      tiny_model, tmp_path):
    from huggingface_hub import snapshot_download

    from registry.workspace import Workspace

    _, commit = publish(hub_server, tiny_model, shards=2)
    snapshot_download(REPO)
    hub_server.requests.clear()
    result = run_import(workspace)
    assert [r for r in hub_server.requests if r.route in ("resolve", "cdn")] == []
    assert result.downloaded_bytes == 0 and "model-00001-of-00002.safetensors" in result.from_cache

    # A cached copy that does not hash right is not used: that file is downloaded again.
    cached = hub_cache_dir / "models--Qwen--Tiny" / "snapshots" / commit / "model-00002-of-00002.safetensors"
    blob = cached.resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    hub_server.requests.clear()
    again = run_import(Workspace.open(tmp_path / "other-store"))
    assert [r.file for r in hub_server.requests.file_requests() if r.server == "cdn"] == [
        "model-00002-of-00002.safetensors"]
    assert "model-00002-of-00002.safetensors" not in again.from_cache


# --- network faults ---------------------------------------------------------------------------------

SHARD2 = "model-00002-of-00003.safetensors"
FAULTS = {
    "connection dropped mid-body": (dict(kind="drop", match=SHARD2, times=None), HubDownloadError,
                                    "the connection broke while downloading model-00002-of-00003"),
    "stall past the timeout": (dict(kind="stall", match=SHARD2, times=None, seconds=3), HubDownloadError,
                               "the Hub stopped answering while sending model-00002-of-00003"),
    "right length, wrong bytes": (dict(kind="corrupt", match=SHARD2), HubIntegrityError,
                                  "model-00002-of-00003.safetensors from Qwen/Tiny has sha256"),
    "short body": (dict(kind="short", match=SHARD2, times=None), HubDownloadError,
                   "the connection broke while downloading model-00002-of-00003"),
    # A single 5xx is retried (test_transfers.py): one that persists ends the import.
    "HTTP 500 on the third file": (dict(kind="status", status=500, match="model-00003-of-00003.safetensors",
                                        times=None), HubDownloadError, "the Hub answered HTTP 500"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_leaves_nothing_and_rerun_reuses_blobs(workspace, hub_server, tiny_model, monkeypatch, fault):
    options, error, message = FAULTS[fault]
    set_hub_timeouts(monkeypatch, download=0.5, etag=0.5)
    publish(hub_server, tiny_model, shards=3)
    armed = hub_server.faults.add(**options)
    with pytest.raises(error) as info:
        run_import(workspace)
    assert armed.fired >= 1
    assert message in str(info.value) and "\n" not in str(info.value)
    assert_store_clean(workspace)
    first_shard = {d for d, _ in workspace.layout.iter_object_paths()}
    assert first_shard  # the blobs of the shard(s) split before the fault stay, as orphans
    inodes = {d: os.stat(workspace.objects.path(d)).st_ino for d in first_shard}

    hub_server.faults.clear()
    result = run_import(workspace)
    assert result.entry.model_name == "Tiny"
    assert result.stats.reused_objects >= len(first_shard)
    # Reused, not written again.
    assert {d: os.stat(workspace.objects.path(d)).st_ino for d in first_shard} == inodes
    assert sorted(os.listdir(workspace.layout.tmp)) == []


def test_a_busy_listing_is_asked_again(workspace, hub_server, tiny_model):
    publish(hub_server, tiny_model)
    hub_server.faults.add(kind="status", status=503, target="info", times=1)
    assert run_import(workspace).entry.model_name == "Tiny"
    assert [r.status for r in hub_server.requests if r.route == "info"] == [503, 200]


def test_a_single_reset_is_resumed(workspace, hub_server, tiny_model):
    publish(hub_server, tiny_model, shards=3)
    hub_server.faults.add(kind="drop", match=SHARD2, times=1)
    result = run_import(workspace)
    assert result.entry.model_name == "Tiny"
    assert len([r for r in hub_server.requests.file_requests(SHARD2) if r.server == "cdn"]) == 2


# --- weight files split while they download ---------------------------------------------------------


def tensor_digests(folder: Path, relpath: str, tmp_path: Path) -> dict[str, str]:
    """What a local split of the published file yields: tensor name -> digest."""
    from store.layout import Layout
    from store.objects import ObjectStore

    layout = Layout(tmp_path / f"reference-{relpath}")
    layout.create()
    return {t.spec.name: t.put.digest for t in ObjectStore(layout).put_tensors(folder / relpath)}


def counting_steps(monkeypatch, log: Path) -> None:
    """Log every mutating filesystem step of this process (MODELSTORE_FAULT=count)."""
    monkeypatch.setattr(faults, "plan", faults.FaultPlan("count", str(log)))


def temp_blobs_created(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines()
               if line.split("\t")[1] == "create" and "/tmp/obj-" in line)


def test_a_server_ignoring_range_makes_the_split_start_over(workspace, hub_server, tiny_model, monkeypatch,
                                                           tmp_path):
    from huggingface_hub import constants

    folder, _ = publish(hub_server, tiny_model)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1000)  # so bytes are in before the reset
    hub_server.faults.add(kind="drop", match="model.safetensors", after_bytes=20_000, times=1)
    hub_server.faults.add(kind="norange", match="model.safetensors", times=1)
    result = run_import(workspace)
    first, second = [r for r in hub_server.requests.file_requests("model.safetensors") if r.server == "cdn"]
    assert first.fault == "drop" and second.range and second.range.startswith("bytes=")
    assert (second.fault, second.status) == ("norange", 200)  # the whole file again, from byte 0
    expected = tensor_digests(folder, "model.safetensors", tmp_path)
    assert {n: t.digest for n, t in result.manifest.tensors.items()} == expected
    assert {d for d, _ in workspace.layout.iter_object_paths()} >= set(expected.values())
    assert result.stats.new_objects == (len(expected) + len(result.manifest.files)
                                        + len(result.manifest.origin_blobs()))
    assert sorted(os.listdir(workspace.layout.tmp)) == []


def test_tensor_bytes_wrong_in_transit_publish_no_blob(workspace, hub_server, tiny_model, monkeypatch, tmp_path):
    from huggingface_hub import constants

    folder, _ = publish(hub_server, tiny_model)
    data = (folder / "model.safetensors").read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1000)
    hub_server.faults.add(kind="corrupt", match="model.safetensors", after_bytes=header_end + 100)
    counting_steps(monkeypatch, tmp_path / "steps.log")
    with pytest.raises(HubIntegrityError) as info:
        run_import(workspace)
    assert "model.safetensors from Qwen/Tiny has sha256" in str(info.value)
    # The header was fine, so the tensors went to temp blobs as they arrived; none was published.
    assert temp_blobs_created(tmp_path / "steps.log") > 1
    assert list(workspace.layout.iter_object_paths()) == []
    assert_store_clean(workspace)


def _shards_with(folder: Path, change) -> dict[str, bytes]:
    """The published folder's files, the second shard rewritten by ``change(shard1, shard2)``."""
    from safetensors.torch import load_file, save

    one, two = (f"model-0000{i}-of-00002.safetensors" for i in (1, 2))
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    first, second = load_file(folder / one), load_file(folder / two)
    change(first, second)
    files[two] = save(second, metadata={"format": "pt"})
    return files


def _first_tensor(shard: dict) -> str:
    return sorted(shard)[0]


HEADER_PROBLEMS = {
    "a tensor also in the first shard": (
        lambda first, second: second.update({_first_tensor(first): first[_first_tensor(first)]}),
        "is also in model-00001-of-00002.safetensors"),
    "a tensor the index puts there is missing": (
        lambda first, second: second.pop(_first_tensor(second)),
        "the checkpoint index and the shard disagree about tensor"),
}


@pytest.mark.parametrize("problem", list(HEADER_PROBLEMS))
def test_a_shard_header_problem_stops_before_any_of_its_blobs(workspace, hub_server, tiny_model, monkeypatch,
                                                               tmp_path, problem):
    change, message = HEADER_PROBLEMS[problem]
    folder = tiny_model(shards=2, name="src-sharded")
    commit = hub_server.add_repo(REPO, _shards_with(folder, change), card_license="mit")
    first = tensor_digests(folder, "model-00001-of-00002.safetensors", tmp_path)
    counting_steps(monkeypatch, tmp_path / "steps.log")
    with pytest.raises(SafetensorsError) as info:
        run_import(workspace)
    assert str(info.value).startswith(f"{REPO}@{commit[:12]}/model-00002-of-00002.safetensors is not a valid "
                                      f"safetensors file: ")
    assert message in str(info.value)
    # The first shard's blobs and its kept header (for a byte-exact export), nothing of the second.
    from registry.ingest.folder import read_head
    from store.digest import digest_bytes

    header = digest_bytes(read_head(folder / "model-00001-of-00002.safetensors"))
    assert {d for d, _ in workspace.layout.iter_object_paths()} == set(first.values()) | {header}
    assert temp_blobs_created(tmp_path / "steps.log") == len(first) + 1  # not one of the second shard's
    assert_store_clean(workspace)


# --- the load check ---------------------------------------------------------------------------------


def test_a_dead_load_check_worker_is_replaced(workspace, hub_server, tiny_model):
    from registry.check import loadcheck as smoke

    publish(hub_server, tiny_model)
    smoke.start_worker()
    smoke._WORKER.proc.kill()
    smoke._WORKER.proc.wait()
    assert run_import(workspace).load_check.ran


def test_model_that_does_not_load_is_not_registered(workspace, hub_server, tiny_model):
    from safetensors.torch import load_file, save_file

    folder = tiny_model()
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.norm.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    hub_server.add_repo(REPO, folder, card_license="mit")
    with pytest.raises(ModelLoadError, match="loading failed: Qwen/Tiny is missing model.norm.weight"):
        run_import(workspace)
    assert_store_clean(workspace)


def test_the_last_weight_file_is_published_while_the_model_loads(workspace, hub_server, tiny_model, tmp_path):
    """Its blobs, hard-linked into the load check's staging view, are renamed into the store
    meanwhile: after a check that fails, they are there (verified, for a re-run to reuse)."""
    from safetensors.torch import load_file, save_file

    from registry.ingest.folder import import_folder
    from registry.workspace import Workspace

    folder = tiny_model()
    tensors = load_file(folder / "model.safetensors")
    tensors["model.norm.weight"].fill_(float("nan"))
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    hub_server.add_repo(REPO, folder, card_license="mit")
    with pytest.raises(ModelLoadError, match="non-finite logits"):
        run_import(workspace)
    assert_store_clean(workspace)
    expected = import_folder(Workspace.open(tmp_path / "other"), folder, name="m").manifest.tensors
    assert all(workspace.objects.exists(t.digest) for t in expected.values())
