"""Malformed safetensors, pickle weights and remote code in a local model folder, through
``python main.py import-model``: each rejected with its specific error (or, beside valid
safetensors, skipped with a warning), the store unchanged, no payload ever run.

The 200 MB header is a real 200 MB (sparse) file: only the size limit can refuse it, and the
error must name that limit, which proves the header was never read.
"""

from __future__ import annotations

import pytest

from registry.ingest.folder import check_weight_file
from store.errors import SafetensorsError
from store.tensors.tensorfile import MAX_HEADER_BYTES
from tests.reliability import hostile_files as files
from tests.reliability.hostile import PICKLE_CASES, REMOTE_CODE_CASES, SAFETENSORS_CASES
from tests.reliability.hostile_scene import (  # noqa: F401  (hostile_template is a fixture)
    assert_case_passes,
    case_params,
    hostile_template,
    make_scene,
    run_case,
)


LOCAL = [c for c in SAFETENSORS_CASES + PICKLE_CASES if not c.hub]
# In process by default (one code path: the header check); a sample, or all when slow tests
# run, as real subprocesses.
CLI_SAMPLE = {"header-200MB", "duplicate-keys", "tensor-climb", "index-shard-climbs", "pickle-only",
              "pickle-renamed-safetensors", "pickle-beside-safetensors"}


@pytest.mark.parametrize("case", case_params(LOCAL))
def test_malformed_weights_are_rejected_with_their_reason(case, hostile_template, tmp_path):
    scene = make_scene(tmp_path / "scene", hostile_template)
    assert_case_passes(run_case(case, scene, in_process=True))
    assert not scene.marker.exists()


@pytest.mark.parametrize("case", case_params(LOCAL, sample=CLI_SAMPLE))
def test_malformed_weights_are_rejected_by_python_main_py(case, hostile_template, tmp_path):
    scene = make_scene(tmp_path / "scene", hostile_template)
    assert_case_passes(run_case(case, scene))
    assert not scene.marker.exists()


@pytest.mark.parametrize("case", case_params([c for c in REMOTE_CODE_CASES if not c.slow]))
def test_auto_map_remote_code_is_never_run_nor_stored(case, hostile_template, tmp_path):
    scene = make_scene(tmp_path / "scene", hostile_template)
    assert_case_passes(run_case(case, scene))
    assert not scene.marker.exists()


def test_the_200mb_header_is_refused_by_its_length_alone(tmp_path):
    files.MALFORMED_SAFETENSORS["header-200MB"][0](tmp_path)
    path = tmp_path / files.WEIGHTS
    assert path.stat().st_size == 8 + files.HUGE_HEADER  # not past the end: only the limit refuses it
    with pytest.raises(SafetensorsError) as info:
        check_weight_file(path, files.WEIGHTS, {})
    assert info.value.reason == f"header length {files.HUGE_HEADER} exceeds the {MAX_HEADER_BYTES}-byte limit"
