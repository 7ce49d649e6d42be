"""One Hub import per line of today's Qwen family, through the real huggingface_hub client
and the test Hub server: the hybrid text line (qwen3_next: two shards, MTP head), the
natively multimodal Qwen3.5 and a VL model (processor files, chat template). The load check
runs each model on text and, for the multimodal ones, on an image through its processor."""

from __future__ import annotations

import pytest

from registry.hub.importer import import_from_hub
from registry.check.validate import validate
from tests.fixtures.qwen_family import family_model
from tests.hub.fixtures import hub_cache_dir, hub_server  # noqa: F401  (fixtures)


@pytest.mark.parametrize("model_type, image", [("qwen3_next", False), ("qwen3_5", True),
                                               ("qwen2_5_vl", True)])
def test_member_imports_from_the_hub_with_its_load_check(workspace, hub_server, tmp_path, model_type,
                                                         image):
    src = family_model(model_type, tmp_path / "src")
    repo = f"Qwen/Tiny-{model_type}"
    commit = hub_server.add_repo(repo, src, card_license="apache-2.0")
    result = import_from_hub(workspace, repo, assume_yes=True)
    assert result.commit == commit
    check = result.load_check
    assert check is not None and check.ran
    assert ("an image through its processor" in check.detail) == image, check.detail
    assert set(result.manifest.files) >= {p.name for p in src.iterdir() if not p.name.endswith(
        (".safetensors", ".index.json"))}
    if model_type == "qwen3_next":
        assert any(n.startswith("mtp.") for n in result.manifest.tensors)
    assert validate(workspace).errors == []


def test_a_tensor_the_model_neither_loads_nor_ignores_by_design_fails_the_check(workspace, hub_server,
                                                                                  tmp_path):
    from safetensors.torch import load_file, save_file

    from registry.errors import ModelLoadError

    src = family_model("qwen3_5", tmp_path / "src", shards=1)
    tensors = load_file(src / "model.safetensors")
    tensors["model.language_model.layers.0.extra.weight"] = tensors["mtp.norm.weight"].clone()
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    hub_server.add_repo("Qwen/Odd", src, card_license="apache-2.0")
    with pytest.raises(ModelLoadError, match="unexpected tensor model.language_model.layers.0.extra.weight"):
        import_from_hub(workspace, "Qwen/Odd", assume_yes=True)
    assert workspace.read_registry().models == {}


def test_qwen_v1_is_refused_naming_the_native_line(workspace, tmp_path):
    import json

    from registry.ingest.folder import import_folder
    from adapters.errors import UnsupportedArchitectureError

    src = family_model("qwen3_next", tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "model_type": "qwen", "auto_map": {}}))
    with pytest.raises(UnsupportedArchitectureError) as info:
        import_folder(workspace, src, name="old")
    assert "remote code" in str(info.value) and "Qwen1.5 and later" in str(info.value)
    assert "qwen3_5" in info.value.hint and "qwen2_vl" in info.value.hint
