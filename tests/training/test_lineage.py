"""Lineage of fine-tunes: base -> ft1 -> ft2 -> ft3, shown with timestamps, checkpoints folded
into their run, parents missing from the registry flagged, children found through manifests."""

from __future__ import annotations

import os
import time

import pytest

from registry.ops import delete_model
from registry.space.gc import collect_garbage
from registry.info import model_info
from registry.lineage import children_of, lineage
from cli.render import lineage_text, model_info_text
from registry.check.validate import validate
from tests.training.runs import FREEZE_75, import_base, run_config
from training.models import load_model
from training.train import train


@pytest.fixture
def chain(workspace, tiny_model):
    base = import_base(workspace, tiny_model)
    runs = {}
    for parent, name in (("base", "ft1"), ("ft1", "ft2"), ("ft2", "ft3")):
        runs[name] = train(workspace, run_config(model_name=parent, freeze=FREEZE_75, output_name=name,
                                                 max_steps=4, save_every=2))
    return base, runs


def test_the_chain_oldest_first_with_timestamps_and_checkpoints(workspace, chain):
    base, runs = chain
    text = lineage_text("ft3", lineage(workspace, "ft3"), children_of(workspace, "ft3"))
    line = {name: f"{name} [{r.entry.manifest[:12]}] finetuned step 4, {r.entry.metadata['fine_tuned_at']}; "
                  "checkpoints at step 2" for name, r in runs.items()}
    assert text.splitlines() == [
        "lineage of ft3 (oldest first):",
        f"  base [{base.manifest_digest[:12]}] local, {base.manifest.created_at}",
        f"  -> {line['ft1']}",
        f"     -> {line['ft2']}",
        f"        -> {line['ft3']}",
        "fine-tuned from it: none",
    ]
    assert children_of(workspace, "base") == ["ft1", "ft2", "ft3"]
    assert children_of(workspace, "ft2") == ["ft3"]


def test_a_deleted_parent_is_flagged_and_its_manifest_stays_readable(workspace, chain):
    base, runs = chain
    delete_model(workspace, "ft1", delete_files=True)
    old = time.time() - 7200
    for _, path in workspace.layout.iter_object_paths():
        os.utime(path, (old, old))
    collect_garbage(workspace)  # ft1's own weights go; its manifests stay (lineage)
    text = lineage_text("ft3", lineage(workspace, "ft3"), children_of(workspace, "ft3"))
    lines = text.splitlines()
    ft1 = runs["ft1"].entry
    assert lines[2] == (f"  -> ft1@step-4 (not in the registry) [{ft1.manifest[:12]}] finetuned "
                        f"step 4, {ft1.metadata['fine_tuned_at']}; checkpoints at step 2")
    assert lines[-2] == "1 ancestor(s) are not in the registry any more; their manifests stay readable"
    info = model_info(workspace, "ft2")
    assert info.parent_missing
    assert "fine_tuned_from    ft1 (not in the registry any more)" in model_info_text(info)
    assert not model_info(workspace, "ft3").parent_missing
    assert children_of(workspace, "base") == ["ft2", "ft3"]  # found through the manifests
    assert load_model(workspace, "ft3", device="cpu").model is not None  # its frozen blobs are still there
    assert validate(workspace).ok
