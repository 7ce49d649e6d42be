"""Every member of today's Qwen family, imported from a local folder as the Hub has it.

One tiny random model per ``model_type`` (tests/fixtures/qwen_family.py): the hybrid line
with ``mtp.*`` tensors in two shards, the VL line with processor files and a chat template.
For each: nothing of the checkpoint is dropped, the view loads in stock transformers with
the source's logits, ``generate`` runs, a deep validation is clean, and a corrupted blob
(an MTP tensor, a processor file) is quarantined and restored by ``--fix``.
"""

from __future__ import annotations

import json

import pytest
import torch

from adapters.family import FAMILY
from registry.ingest.folder import import_folder
from registry.repair.fix import repair
from registry.check.validate import validate
from store.tensors.tensorfile import read_header
from tests.fixtures.qwen_family import FAMILY_TYPES, HYBRID_TYPES, VL_TYPES, auto_class, family_model
from tests.registry.breakage import flip_bit
from training.generate import generate_text

PROBE = torch.tensor([[1, 7, 42, 300, 5, 99, 12, 3]])


def logits_of(folder, model_type):
    """Logits of stock transformers' load of ``folder``. The weights are copied out of the
    mapped files first: a tensor's address modulo 64 (its offset in a file) picks the SIMD
    path of some kernels (MoE experts), which moves the last bit of a float32 sum."""
    model = auto_class(model_type).from_pretrained(folder).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.data = param.data.clone()
    with torch.inference_mode():
        return model(input_ids=PROBE, use_cache=False).logits


def source_tensors(folder) -> dict[str, tuple[str, list[int]]]:
    names = {}
    for shard in folder.glob("*.safetensors"):
        header = read_header(shard)
        names.update((t.name, (t.dtype, list(t.shape))) for t in header.tensors)
    return names


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_member_imports_whole_loads_with_the_sources_logits_generates_and_repairs(
        workspace, tmp_path, model_type):
    src = family_model(model_type, tmp_path / "src")
    result = import_folder(workspace, src, name="m")
    manifest = result.manifest
    assert manifest.architecture_type == model_type

    # Nothing of the checkpoint is dropped: every tensor (mtp.* too), every processor file.
    expected = source_tensors(src)
    assert {n: (t.dtype, list(t.shape)) for n, t in manifest.tensors.items()} == expected
    if model_type in HYBRID_TYPES:
        assert any(n.startswith("mtp.") for n in manifest.tensors)
    if model_type in VL_TYPES:
        assert {"preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json",
                "chat_template.jinja"} <= set(manifest.files)
    view = workspace.root / "models" / "m"
    index = json.loads((view / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(expected)
    for relpath in manifest.files:
        assert (view / relpath).read_bytes() == (src / relpath).read_bytes()

    # The view is a Hugging Face folder: stock transformers, the source's logits.
    assert torch.equal(logits_of(view, model_type), logits_of(src, model_type))

    generation = generate_text(workspace, "m", prompt="Once upon a time", max_new_tokens=4,
                               temperature=0, device="cpu")
    assert len(generation.token_ids) + (generation.stopped == "eos") >= 1

    assert validate(workspace).errors == []

    # One corrupted blob of what only the new members carry, restored from the source.
    relpath = next(n for n in manifest.tensors if n.startswith("mtp.")) if model_type in HYBRID_TYPES \
        else "preprocessor_config.json"
    digest = (manifest.tensors[relpath] if relpath in manifest.tensors else manifest.files[relpath]).digest
    flip_bit(workspace.objects.path(digest))
    report = validate(workspace)
    assert [(f.code, f.digest) for f in report.errors] == [("object-corrupt", digest)]
    fixed = repair(workspace, on_plan=lambda report, plan: True)
    assert fixed.outcome is not None and fixed.outcome.failed == []
    assert workspace.objects.rehash(digest) == digest
    assert validate(workspace).errors == []


def test_every_member_is_one_row_of_the_family_table():
    for model_type in FAMILY_TYPES:
        row = FAMILY[model_type]
        assert row.vision == (model_type in VL_TYPES)
        assert row.auto_class == auto_class(model_type).__name__


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_config_implies_exactly_the_checkpoints_tensors_on_the_meta_device(tmp_path, model_type):
    """What config.json implies (built on the meta device: no memory, no weights) is what the
    checkpoint holds, names, dtypes and shapes, except the tensors kept by design."""
    import re

    from adapters import get_adapter

    src = family_model(model_type, tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    adapter = get_adapter(model_type)
    expected = adapter.expected_tensors(config)
    on_disk = source_tensors(src)
    extra = set(on_disk) - set(expected)
    kept = [re.compile(p) for p in adapter.kept_by_design(adapter.build(config))]
    assert all(any(p.search(n) for p in kept) for n in extra), extra
    assert (model_type in HYBRID_TYPES) == bool(extra)
    assert {n: on_disk[n] for n in expected} == expected
