"""The view layout (tensor links at the top, each named in the index) and outdated views.

The layout rule is checked exactly as vLLM selects weight files (its
``filter_duplicate_safetensors_files``: glob ``*.safetensors`` at the top of the folder, keep
those the index's ``weight_map`` names), without installing vLLM: every top-level
``*.safetensors`` of a view is named in the index, every index entry is a top-level file,
and the selected files hold exactly the model's tensors.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

import pytest

from registry.check.validate import validate
from registry.ingest.folder import import_folder
from registry.repair.fix import repair
from registry.space.gc import collect_garbage
from registry.view_state import view_matches
from registry.views import (INDEX_FILENAME, LEGACY_WEIGHTS_DIR, expected_view, file_path_problem,
                            has_legacy_layout, tensor_name_problem, tensor_relpath)
from store.tensors.tensorfile import read_header
from tests.registry.breakage import two_models


def vllm_weight_files(folder: Path) -> list[str]:
    """The files vLLM's loader reads from a local folder with an index: the top-level
    ``*.safetensors`` glob, filtered to those the index's weight_map names."""
    found = glob.glob(os.path.join(folder, "*.safetensors"))
    with open(os.path.join(folder, INDEX_FILENAME)) as f:
        weight_map = json.load(f)["weight_map"]
    in_index = {os.path.join(folder, shard) for shard in weight_map.values()}
    return [path for path in found if path in in_index]


def test_every_weight_file_vllm_globs_is_in_the_index_and_every_entry_is_at_the_top(workspace, tiny_model):
    result = import_folder(workspace, tiny_model("qwen2_moe"), name="moe")
    view = workspace.root / "models" / "moe"
    globbed = sorted(glob.glob(os.path.join(view, "*.safetensors")))
    selected = sorted(vllm_weight_files(view))
    assert selected == globbed and len(selected) == len(result.manifest.tensors)  # the filter drops none
    weight_map = json.loads((view / INDEX_FILENAME).read_text())["weight_map"]
    assert all("/" not in shard and (view / shard).is_file() for shard in weight_map.values())
    assert sorted(str(view / shard) for shard in set(weight_map.values())) == selected
    # The selected files hold exactly the model's tensors, each where the index says.
    held = {}
    for path in selected:
        for spec in read_header(Path(path)).tensors:
            held[spec.name] = os.path.basename(path)
    assert held == weight_map and set(held) == set(result.manifest.tensors)
    assert not [p for p in view.iterdir() if p.is_dir()]  # no subfolder: nothing a glob misses


def test_tensor_file_names_cannot_collide_and_stay_valid():
    assert tensor_relpath("model") == "tensor-model.safetensors"  # never a real model.safetensors
    longest = "x" * (240 - len(".safetensors"))
    assert tensor_name_problem(longest) is None and len(tensor_relpath(longest).encode()) <= 255
    assert tensor_name_problem(longest + "x") is not None
    # No model file can take a tensor link's place, or be a weight file at the top.
    for path in ("model.safetensors", "tensor-model.safetensors", "weights/x.json", INDEX_FILENAME):
        assert file_path_problem(path) == "the view generates that path itself"
    assert file_path_problem("config.json") is None


def make_legacy(ws, name: str) -> Path:
    """Rewrite ``models/<name>`` as the earlier layout built it (tensor links under weights/)."""
    entry = ws.read_registry().models[name]
    spec = expected_view(entry, ws.manifest(entry.manifest), legacy=True)
    view = ws.view_path(name)
    shutil.rmtree(view)
    view.mkdir()
    for relpath in spec.links:
        (view / relpath).parent.mkdir(exist_ok=True)
        os.symlink(spec.link_target(ws, name, relpath), view / relpath)
    for relpath, data in spec.generated.items():
        (view / relpath).write_bytes(data)
    return view


def current(ws, name: str) -> bool:
    entry = ws.read_registry().models[name]
    return view_matches(ws, entry, ws.manifest(entry.manifest))


@pytest.fixture
def s(workspace, tiny_model):
    return two_models(workspace, tiny_model)


def test_an_old_layout_view_is_reported_outdated_not_corrupt(s):
    make_legacy(s.ws, "a")
    report = validate(s.ws)
    assert report.ok and report.errors == []
    [note] = [f for f in report.notes if f.code == "view-outdated"]
    assert note.models == ("a",) and note.path == "models/a" and note.severity == "info"
    assert note.message == ("models/a keeps its tensor links under models/a/weights/, the layout before tensor "
                            "links moved to the top of the folder (vLLM and SGLang find no weights there); the "
                            "next writer or `--fix` rebuilds it")


def test_the_next_writer_rebuilds_an_old_layout_view(s):
    view = make_legacy(s.ws, "a")
    b_before = s.snapshot("b")
    validate(s.ws)  # readers leave it as it is
    assert has_legacy_layout(s.ws, "a")
    collect_garbage(s.ws)  # any writer: it takes the lock
    assert not (view / LEGACY_WEIGHTS_DIR).exists() and current(s.ws, "a")
    assert s.snapshot("b") == b_before
    assert [f.code for f in validate(s.ws).findings] == []


def test_fix_rebuilds_an_old_layout_view_without_quarantining_its_links(s):
    make_legacy(s.ws, "a")
    result = repair(s.ws, on_plan=lambda report, plan: True)
    assert [step.kind for step in result.plan.steps] == ["rebuild-view"]
    assert current(s.ws, "a") and result.after.ok and result.after.findings == []
    assert not s.ws.layout.quarantine.exists() or not any(s.ws.layout.quarantine.rglob("*"))
    again = repair(s.ws, on_plan=lambda report, plan: True)
    assert again.plan.empty


def test_a_damaged_old_layout_view_is_left_to_fix(s):
    view = make_legacy(s.ws, "a")
    (view / "notes.txt").write_text("mine")
    collect_garbage(s.ws)
    assert has_legacy_layout(s.ws, "a") and (view / "notes.txt").read_text() == "mine"  # a writer keeps out
    codes = sorted(f.code for f in validate(s.ws).findings)
    assert codes == ["view-extra-file", "view-outdated"]
    result = repair(s.ws, on_plan=lambda report, plan: True)
    assert current(s.ws, "a") and result.after.ok
