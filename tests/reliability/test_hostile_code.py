"""Code that must never run (slow: these load torch and transformers).

A config.json whose ``auto_map`` points at ``modeling_evil.py`` (which creates a marker file
when imported): the Hub import's load check and ``generate`` load such a model, and the
adapter loads a folder with the code file right beside it. ``trust_remote_code`` is never
passed as anything but False, so the marker must never appear. The CLI's answer: the import
goes ahead without the code (``warning: skipped modeling_evil.py: remote code is never run``)
and the model loads with the architecture's own transformers class.
"""

from __future__ import annotations

import shutil

import pytest

from tests.hub.server import HubServer
from tests.reliability import hostile_files as files
from tests.reliability.hostile import HUB_CASES, REMOTE_CODE_CASES
from tests.reliability.hostile_scene import (  # noqa: F401  (hostile_template is a fixture)
    assert_case_passes,
    hostile_template,
    make_scene,
    run_case,
)

SLOW_CODE_CASES = [c for c in REMOTE_CODE_CASES + HUB_CASES if c.category == "remote_code" and c.slow]


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CODE_CASES, ids=lambda c: c.id)
def test_loading_a_model_with_auto_map_never_runs_its_code(case, hub, hostile_template, tmp_path):
    scene = make_scene(tmp_path / "scene", hostile_template, hub if case.hub else None)
    outcome = run_case(case, scene)
    assert_case_passes(outcome)
    assert not scene.marker.exists()
    # The model really was loaded and run: by the import's load check, or by generate.
    assert ("forward pass on a few tokens: finite logits" if case.hub else "generate") in outcome.stderr


@pytest.mark.slow
def test_the_adapter_loads_a_folder_with_the_remote_code_beside_it_without_running_it(tmp_path,
                                                                                     hostile_template):
    from adapters import get_adapter

    folder = tmp_path / "model"
    shutil.copytree(hostile_template / "src", folder)
    marker = tmp_path / "PWNED"
    (folder / "config.json").write_bytes(files.with_auto_map((folder / "config.json").read_bytes()))
    for name, data in files.remote_code(marker).items():
        (folder / name).write_bytes(data)
    model = get_adapter("qwen2").load_folder(folder)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert not marker.exists()
