"""What import-model SOURCE names on the Hub: repo ids, URLs, hf:// URIs, and hostile input."""

from __future__ import annotations

import pytest

from registry.hub.source import HubSource, parse_hub_source, repo_id_problem
from registry.importer import is_local_source
from registry.hub.errors import HubSourceError
from store.errors import UsageError


@pytest.mark.parametrize("source, expected", [
    ("Qwen/Qwen2.5-0.5B", HubSource("Qwen/Qwen2.5-0.5B", None, None)),
    ("  Qwen/Qwen2.5-0.5B ", HubSource("Qwen/Qwen2.5-0.5B", None, None)),
    ("https://huggingface.co/Qwen/Qwen2.5-0.5B", HubSource("Qwen/Qwen2.5-0.5B", None, None)),
    ("https://huggingface.co/Qwen/Qwen2.5-0.5B/", HubSource("Qwen/Qwen2.5-0.5B", None, None)),
    ("https://hf.co/Qwen/Qwen2.5-0.5B?library=transformers#top", HubSource("Qwen/Qwen2.5-0.5B", None, None)),
    ("https://huggingface.co/Qwen/Qwen2.5-0.5B/tree/main", HubSource("Qwen/Qwen2.5-0.5B", "main", None)),
    ("https://huggingface.co/Qwen/Qwen2.5-0.5B/tree/v1.0", HubSource("Qwen/Qwen2.5-0.5B", "v1.0", None)),
    ("https://huggingface.co/org/m/tree/refs%2Fpr%2F3", HubSource("org/m", "refs/pr/3", None)),
    ("https://huggingface.co/org/m/tree/feature/x", HubSource("org/m", "feature/x", None)),
    ("http://127.0.0.1:8080/org/m", HubSource("org/m", None, "http://127.0.0.1:8080")),
    ("https://hf-mirror.example/org/m/tree/dev", HubSource("org/m", "dev", "https://hf-mirror.example")),
    ("hf://Qwen/Qwen2.5-0.5B", HubSource("Qwen/Qwen2.5-0.5B", None, None)),
    ("hf://Qwen/Qwen2.5-0.5B@v2", HubSource("Qwen/Qwen2.5-0.5B", "v2", None)),
])
def test_accepted_forms(source, expected):
    assert parse_hub_source(source) == expected


def test_revision_option_and_url_revision():
    assert parse_hub_source("org/m", "dev").revision == "dev"
    assert parse_hub_source("https://huggingface.co/org/m/tree/dev", "dev").revision == "dev"
    sha = "a" * 40
    assert parse_hub_source("org/m", sha).revision == sha
    with pytest.raises(UsageError, match="names revision 'dev' but --revision is 'main'"):
        parse_hub_source("https://huggingface.co/org/m/tree/dev", "main")


@pytest.mark.parametrize("source, reason", [
    ("../etc", "must not contain '--' or '..'"),
    ("org/../../etc", "exactly one '/'"),
    ("/etc/passwd", "exactly one '/'"),
    (".git/config", "'.git' is not a valid part"),
    ("org/.hidden", "'.hidden' is not a valid part"),
    ("org/name.git", "must not end with '.git'"),
    ("org/a--b", "must not contain '--'"),
    ("org/na me", "'na me' is not a valid part"),
    ("org/" + "x" * 100, "at most 96 characters"),
    ("hf://org/../x", "exactly one '/'"),
    ("https://huggingface.co/org/../etc", "must not contain '--' or '..'"),
    ("https://huggingface.co/org/%2e%2e", "must not contain '--' or '..'"),
    ("https://huggingface.co/org", "does not name a namespace/name repo"),
    ("https://huggingface.co/datasets/org/data", "it is a dataset, not a model repo"),
    ("https://huggingface.co/spaces/org/app", "it is a Space, not a model repo"),
    ("hf://datasets/org/data", "it is a dataset, not a model repo"),
    ("https://huggingface.co/org/m/blob/main/config.json", "the URL of one file"),
    ("https://huggingface.co/org/m/resolve/main/model.safetensors", "the URL of one file"),
    ("https://huggingface.co/org/m/discussions", "unexpected 'discussions'"),
    ("https://user:hf_secret@huggingface.co/org/m", "carries credentials"),
])
def test_refused_sources_name_the_rule(source, reason):
    with pytest.raises(HubSourceError) as info:
        parse_hub_source(source)
    assert reason in str(info.value)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("revision", ["", " main", "ma\nin", "x" * 300])
def test_bad_revisions_are_refused(revision):
    with pytest.raises(HubSourceError, match="revision"):
        parse_hub_source("org/m", revision)


def test_repo_id_rules_accept_real_ids():
    for repo_id in ("Qwen/Qwen2.5-0.5B", "Qwen/Qwen3-30B-A3B", "meta-llama/Llama-3.1-8B", "a/b", "x_y/z.w"):
        assert repo_id_problem(repo_id) is None, repo_id


def test_hub_sources_are_not_mistaken_for_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_local_source("Qwen/Qwen2.5-0.5B")
    assert not is_local_source("https://huggingface.co/Qwen/Qwen2.5-0.5B")
    assert not is_local_source("hf://Qwen/Qwen2.5-0.5B")
    (tmp_path / "Qwen" / "Qwen2.5-0.5B").mkdir(parents=True)
    assert is_local_source("Qwen/Qwen2.5-0.5B")  # an existing folder wins
    assert is_local_source("./model") and is_local_source("/abs/model")
