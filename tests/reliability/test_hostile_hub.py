"""Hostile Hub repos through ``python main.py import-model`` against the fake Hub: a listing
with unsafe paths refuses the whole repo before any download, pickle weights are never
fetched or unpickled, malformed weights are named by their repo path (not a temp file). The
HF cache, the sentinel beside the workspace and absolute targets stay untouched.
"""

from __future__ import annotations

import pytest

from registry.hub.download import listing_path_problem
from tests.hub.server import HubServer
from tests.reliability.hostile import HOSTILE_LISTING, HUB_CASES
from tests.reliability.hostile_scene import (  # noqa: F401  (hostile_template is a fixture)
    assert_case_passes,
    case_params,
    hostile_template,
    make_scene,
    run_case,
)


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server
    assert not server.errors, "fake Hub bug:\n" + "\n".join(server.errors)


# Each case is a real subprocess against the fake Hub; by default a sample (the listing check
# itself runs on every hostile path below, and in tests/registry/test_hub_import.py).
CLI_SAMPLE = {"dotdot-json", "absolute-into-sentinel", "git-config", "hub-pickle-only", "hub-pickle-renamed"}


@pytest.mark.parametrize("case", case_params([c for c in HUB_CASES if c.category != "remote_code"],
                                             sample=CLI_SAMPLE))
def test_hostile_hub_repo_is_refused_and_nothing_lands_outside(case, hub, hostile_template, tmp_path):
    scene = make_scene(tmp_path / "scene", hostile_template, hub)
    assert_case_passes(run_case(case, scene))
    assert not (scene.hf_home / "hub").exists()  # the import reads the HF cache, never writes it


@pytest.mark.parametrize("path", ["config.json", "sub/notes.md", ".gitattributes", "onnx/model.onnx",
                                  "a.b/c..d.json"])
def test_ordinary_listing_paths_are_not_hostile(path):
    assert listing_path_problem(path) is None


def test_every_listed_hostile_path_has_its_reason():
    for path, problem in HOSTILE_LISTING.values():
        assert listing_path_problem(path.format(outside="/tmp/sentinel")) == problem
