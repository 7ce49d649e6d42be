"""A real filesystem too small for the work (a tmpfs), no fault injection: see diskfull_fs.py.

Mounted as root, or else in a user namespace (``unshare -Urm``); skipped, printing why, only
where neither is allowed. Every tmpfs is unmounted when its case ends, pass or fail.
"""

from __future__ import annotations

import pytest

from tests.reliability.diskfull import NO_SPACE
from tests.reliability.diskfull_fs import MODEL, MountUnavailable, mount_method
from tests.reliability.diskfull_fs import run_case as run_in_tmpfs
from tests.reliability.diskfull_scenarios import tiny_source


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_source(tmp_path_factory.mktemp("diskfull-fs") / "model", **MODEL)


def run_case(case: str, tmp_path, model) -> dict:
    try:
        mount_method()
    except MountUnavailable as e:
        print(f"skipped: no real small filesystem here: {e}")
        pytest.skip(f"no real small filesystem here: {e}")
    figures = run_in_tmpfs(case, tmp_path, model)
    assert figures["error_ok"], figures["error"]
    return figures


def test_a_filesystem_smaller_than_the_model_is_refused_up_front(tmp_path, model):
    figures = run_case("refused", tmp_path, model)
    assert figures["exit"] == 1 and figures["problems"] == []
    assert figures["free_before"] < figures["needed"]
    # the up-front check names ENOSPC, the sizes and the workspace; it created nothing
    assert figures["error"].startswith("error: ENOSPC: 2.2 MB needed but ")
    assert figures["path"] == f"{figures['mount']}/ws"
    assert figures["workspace_after"] == []
    assert figures["retry_problems"] == []  # remounted 4x bigger, the same import succeeds


def test_running_out_of_space_part_way_through_the_import(tmp_path, model):
    figures = run_case("mid-write", tmp_path, model)
    # the up-front check passed (the source's bytes fit), then a real write failed
    assert figures["free_before"] >= figures["needed"]
    assert figures["exit"] == 1, figures["error"]
    assert figures["error"].startswith(f"error: ENOSPC: {NO_SPACE} at {figures['mount']}/ws/")
    assert figures["problems"] == []  # store sound, no partial object, registry absent, no temp
    assert figures["retry_problems"] == []  # the filler deleted, the same import succeeds


def test_source_on_the_same_full_filesystem_stays_untouched(tmp_path, model):
    figures = run_case("same-fs", tmp_path, model)
    assert figures["exit"] == 1
    assert figures["error"].startswith(f"error: ENOSPC: {NO_SPACE} at {figures['mount']}/ws/")
    assert figures["problems"] == []  # includes: the source's bytes are identical
    assert figures["retry_problems"] == []


def test_second_name_on_a_full_filesystem_writes_no_half_view(tmp_path, model):
    figures = run_case("second-name", tmp_path, model)
    assert figures["exit"] == 1 and figures["free_before"] < 4096
    assert figures["error"].startswith(f"error: ENOSPC: {NO_SPACE} at {figures['mount']}/ws/")
    assert figures["problems"] == []  # m intact, no models/m2, registry byte-identical
    assert figures["retry_problems"] == []


def test_gc_on_a_filesystem_without_a_free_inode(tmp_path, model):
    figures = run_case("gc", tmp_path, model)
    assert figures["error"].startswith(f"error: ENOSPC: {NO_SPACE} at {figures['mount']}/ws/.modelstore/")
    assert figures["problems"] == []  # store sound, registry unchanged, no temp left
    assert figures["retry_problems"] == []  # the fillers removed, the same gc collects d's blobs


def test_fix_restoring_a_blob_onto_a_full_filesystem(tmp_path, model):
    figures = run_case("fix", tmp_path, model)
    assert figures["exit"] == 1 and figures["free_before"] < 4096
    assert figures["problems"] == []  # no partial object under a final name, no temp left
    assert figures["retry_problems"] == []  # space freed, the same --fix repairs the store
