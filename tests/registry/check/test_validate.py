"""validate-registry's checks: one break per test, the exact finding, and nothing else.

Each test breaks one thing of model ``a`` in a workspace holding ``a`` and ``b`` and
asserts the complete list of errors (code, severity, models, digest, path). Repair of the
same breaks is tested in test_repair.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from store.errors import Next
from registry.check.findings import CODES
from registry.check.validate import validate
from tests.registry.breakage import (
    EXCLUSIVE, SAME_SIZE, SHARED, finding_keys, flip_bit, rewrite_object, two_models, workspace_state,
)


@pytest.fixture
def s(workspace, tiny_model):
    return two_models(workspace, tiny_model)


def errors(ws, deep=True):
    return finding_keys(validate(ws, deep=deep).errors)


def test_clean_store_deep_and_fast(s):
    deep = validate(s.ws)
    assert deep.findings == [] and deep.ok
    objects = s.a.manifest.object_digests() | s.b.manifest.object_digests()
    assert deep.objects == len(objects) + 2  # + the two manifests
    assert deep.models == 2
    assert deep.summary().startswith(f"2 models, {deep.objects} objects, ")
    assert deep.summary().endswith("verified, no problems found")
    fast = validate(s.ws, deep=False)
    assert fast.ok and "--fast: not re-hashed" in fast.summary()


def test_validation_writes_nothing(s):
    flip_bit(s.obj(s.tensor("a", EXCLUSIVE)))
    (s.root / "models" / "a" / "extra.txt").write_text("x")
    before = workspace_state(s.root)
    validate(s.ws)
    assert workspace_state(s.root) == before


def test_empty_folder_is_a_clean_empty_store(workspace):
    report = validate(workspace)
    assert report.ok and report.findings == [] and report.summary().startswith("0 models, 0 objects")
    assert not (workspace.root / ".modelstore").exists()


# --- objects ------------------------------------------------------------------------------


def test_bit_flip_found_by_deep_check_only(s):
    digest = s.tensor("a", EXCLUSIVE)
    path = s.obj(digest)
    mode, mtime = os.stat(path).st_mode, os.stat(path).st_mtime_ns
    flip_bit(path)
    assert (os.stat(path).st_mode, os.stat(path).st_mtime_ns) == (mode, mtime)  # looks untouched
    assert errors(s.ws, deep=False) == []  # sizes and modes prove nothing
    report = validate(s.ws)
    assert finding_keys(report.errors) == [("object-corrupt", "error", ("a",), digest, s.rel(path))]
    message = report.errors[0].message
    assert f"tensor-{EXCLUSIVE}.safetensors of model 'a'" in message and "hash to" in message


@pytest.mark.parametrize("change, how", [
    (lambda d: d[:-7], "truncated"),
    (lambda d: d + b"\0" * 3, "extended"),
])
def test_size_changes_found_by_fast_check(s, change, how):
    digest = s.tensor("a", EXCLUSIVE)
    path = s.obj(digest)
    rewrite_object(path, change(path.read_bytes()))
    for deep in (False, True):
        report = validate(s.ws, deep=deep)
        assert finding_keys(report.errors) == [("object-size", "error", ("a",), digest, s.rel(path))]
        assert how in report.errors[0].message


def test_deleted_blob(s):
    digest = s.tensor("a", EXCLUSIVE)
    os.unlink(s.obj(digest))
    assert errors(s.ws, deep=False) == [("object-missing", "error", ("a",), digest, s.rel(s.obj(digest)))]


def test_blob_replaced_by_another_valid_blobs_bytes(s):
    victim, donor = (s.tensor("a", t) for t in SAME_SIZE)
    assert s.obj(victim).stat().st_size == s.obj(donor).stat().st_size
    rewrite_object(s.obj(victim), s.obj(donor).read_bytes())
    report = validate(s.ws)
    assert finding_keys(report.errors) == [("object-corrupt", "error", ("a",), victim, s.rel(s.obj(victim)))]
    assert f"the bytes of another object ({donor[:12]})" in report.errors[0].message


def test_shared_blob_names_every_model(s):
    digest = s.tensor("a", SHARED)
    assert digest == s.tensor("b", SHARED)
    flip_bit(s.obj(digest))
    assert errors(s.ws) == [("object-corrupt", "error", ("a", "b"), digest, s.rel(s.obj(digest)))]


def test_object_replaced_by_a_symlink_is_corrupt(s):
    digest = s.tensor("a", EXCLUSIVE)
    path = s.obj(digest)
    copy = s.root / "elsewhere"
    shutil.copy(path, copy)
    os.unlink(path)
    os.symlink(copy, path)  # same bytes, but an object must be a file of its own
    assert errors(s.ws) == [("object-corrupt", "error", ("a",), digest, s.rel(path))]


def test_writable_object_is_noted_and_still_verified(s):
    digest = s.tensor("a", EXCLUSIVE)
    os.chmod(s.obj(digest), 0o644)
    report = validate(s.ws, deep=False)
    assert report.ok
    assert finding_keys(report.notes) == [("object-writable", "info", ("a",), digest, s.rel(s.obj(digest)))]


def test_corrupted_manifest(s):
    digest = s.a.manifest_digest
    path = s.obj(digest)
    rewrite_object(path, path.read_bytes().replace(b'"qwen2"', b'"qwen3"', 1))
    # The manifest cannot be trusted, so its objects and view are not checked against it.
    assert errors(s.ws, deep=False) == [("manifest-corrupt", "error", ("a",), digest, s.rel(path))]


# --- the registry -------------------------------------------------------------------------


def registry_error(s, data: bytes):
    s.ws.registry_path.write_bytes(data)
    report = validate(s.ws)
    return finding_keys(report.errors), report


def test_registry_emptied(s):
    keys, _ = registry_error(s, b"")
    assert keys == [("registry-empty", "error", (), None, "models/registry.json")]


def test_registry_truncated(s):
    data = s.ws.registry_path.read_bytes()
    keys, _ = registry_error(s, data[: len(data) // 2])
    assert keys == [("registry-truncated", "error", (), None, "models/registry.json")]


def test_registry_invalid_json(s):
    data = s.ws.registry_path.read_bytes().replace(b'"models"', b"models", 1)
    keys, report = registry_error(s, data)
    assert keys == [("registry-invalid-json", "error", (), None, "models/registry.json")]
    assert "line 3" in report.errors[0].message


def test_registry_duplicate_key(s):
    doc = json.loads(s.ws.registry_path.read_bytes())
    a_entry = json.dumps(doc["models"]["a"])
    text = s.ws.registry_path.read_text().replace('"models": {', f'"models": {{\n"a": {a_entry},', 1)
    keys, report = registry_error(s, text.encode())
    assert keys == [("registry-duplicate-key", "error", ("a",), None, "models/registry.json")]
    assert "registered twice" in report.errors[0].message
    assert report.models == 2  # the entries are still checked


def test_registry_unknown_fields(s):
    doc = json.loads(s.ws.registry_path.read_bytes())
    doc["models"]["a"]["colour"] = "blue"
    doc["written_by"] = "someone"
    keys, report = registry_error(s, json.dumps(doc).encode())
    assert keys == [("registry-unknown-field", "error", (), None, "models/registry.json"),
                    ("registry-unknown-field", "error", ("a",), None, "models/registry.json")]
    assert report.models == 2


def test_registry_newer_schema(s):
    doc = json.loads(s.ws.registry_path.read_bytes())
    doc["schema_version"] = 2
    keys, report = registry_error(s, json.dumps(doc).encode())
    assert keys == [("registry-newer-schema", "error", (), None, "models/registry.json")]
    assert "upgrade modelstore" in report.errors[0].message


@pytest.mark.parametrize("edit, code", [
    (lambda d: d["models"]["a"].pop("manifest"), "registry-missing-field"),
    (lambda d: d["models"]["a"].update(source="ftp"), "registry-invalid-entry"),
    (lambda d: d["models"]["a"].update(model_name="b"), "registry-entry-name"),
    (lambda d: d["models"]["a"].update(manifest="abc"), "registry-invalid-entry"),
    (lambda d: d["models"]["a"].update(local_path="/etc"), "registry-invalid-entry"),
    (lambda d: d["models"].update({"../x": d["models"]["a"]}), "registry-invalid-name"),
    (lambda d: d.update(models=[]), "registry-invalid"),
])
def test_registry_field_problems(s, edit, code):
    doc = json.loads(s.ws.registry_path.read_bytes())
    edit(doc)
    keys, report = registry_error(s, json.dumps(doc).encode())
    assert [k[0] for k in keys] == [code]


def test_registry_deleted_while_views_remain(s):
    os.unlink(s.ws.registry_path)
    assert errors(s.ws) == [("registry-missing", "error", (), None, "models/registry.json")]


# --- views --------------------------------------------------------------------------------


def view_errors(s):
    return errors(s.ws, deep=False)


def test_dangling_symlink(s):
    link = s.link("a", EXCLUSIVE)
    os.unlink(link)
    os.symlink("../../../.modelstore/objects/00/nothing", link)
    digest = s.tensor("a", EXCLUSIVE)
    assert view_errors(s) == [("view-link-dangling", "error", ("a",), digest, s.rel(link))]


def test_retargeted_symlink(s):
    link = s.link("a", EXCLUSIVE)
    target = os.readlink(s.link("b", EXCLUSIVE))  # b's embedding: a valid object, the wrong one
    os.unlink(link)
    os.symlink(target, link)
    digest = s.tensor("a", EXCLUSIVE)
    assert view_errors(s) == [("view-link-retargeted", "error", ("a",), digest, s.rel(link))]


def test_symlink_replaced_by_a_copy(s):
    link = s.link("a", EXCLUSIVE)
    data = link.read_bytes()
    os.unlink(link)
    link.write_bytes(data)  # the right bytes, but no longer a link into the store
    assert view_errors(s) == [("view-link-replaced", "error", ("a",), s.tensor("a", EXCLUSIVE), s.rel(link))]


def test_extra_file_in_view(s):
    extra = s.root / "models" / "a" / "pytorch_model.bin"
    extra.write_bytes(b"not ours")
    assert view_errors(s) == [("view-extra-file", "error", ("a",), None, s.rel(extra))]


def test_generated_file_edited(s):
    meta = s.root / "models" / "a" / "metadata.json"
    meta.write_text(meta.read_text().replace('"a"', '"z"'))
    assert view_errors(s) == [("view-file-modified", "error", ("a",), None, s.rel(meta))]


def test_missing_view(s):
    shutil.rmtree(s.root / "models" / "a")
    assert view_errors(s) == [("view-missing", "error", ("a",), None, "models/a")]


def test_orphan_directory_is_a_note(s):
    (s.root / "models" / "leftover").mkdir()
    report = validate(s.ws)
    assert report.ok
    assert finding_keys(report.notes) == [("orphan-directory", "info", (), None, "models/leftover")]
    assert report.summary().endswith("no problems found (1 note)")


def test_unreferenced_objects_and_temp_debris_are_notes(s):
    s.ws.objects.put_bytes(b"nobody references this")
    (s.ws.layout.tmp / "obj-1-abc.tmp").write_bytes(b"half written")
    report = validate(s.ws)
    assert report.ok
    assert [f.code for f in report.notes] == ["object-unreferenced", "temp-debris"]
    assert str(report.notes[0].message).startswith("1 object (")  # singular since plurals were fixed
    assert report.notes[0].message.actions == (Next("gc"),)  # the next action is a value


def _write_through_view(path: str) -> str:
    try:
        with open(path, "r+b") as f:
            f.write(b"x")
    except PermissionError:
        return "refused"
    return "written"


@pytest.fixture
def world_readable_dir():
    """A folder an unprivileged user can traverse (pytest's tmp folders are private to us)."""
    path = tempfile.mkdtemp(prefix="modelstore-test-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def test_writing_through_a_view_fails(world_readable_dir, tiny_model):
    """Blobs are 0444: opening a view's file for writing is refused (for root: as nobody)."""
    from registry.ingest.folder import import_folder
    from registry.workspace import Workspace

    ws = Workspace.open(world_readable_dir)
    import_folder(ws, tiny_model(), name="a")
    targets = [ws.root / "models" / "a" / "config.json",
               ws.root / "models" / "a" / f"tensor-{EXCLUSIVE}.safetensors"]
    control = ws.root / "control.txt"  # a 0644 file of the same owner: writable, as a control
    control.write_bytes(b"y")
    before = [t.read_bytes() for t in targets]
    if os.geteuid() == 0:  # root ignores modes: hand the files to nobody, and write as nobody
        for path in [ws.root, *ws.root.rglob("*")]:
            os.chown(path, 65534, 65534, follow_symlinks=False)
    code = ("import os, sys\n" + _source(_write_through_view) +
            "if os.geteuid() == 0:\n    os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "print(*[_write_through_view(p) for p in sys.argv[1:]])\n")
    out = subprocess.run([sys.executable, "-c", code, *map(str, targets), str(control)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["refused", "refused", "written"]
    assert [t.read_bytes() for t in targets] == before and validate(ws).ok


def _source(fn) -> str:
    import inspect

    return inspect.getsource(fn)


def test_every_code_has_a_severity_and_description():
    assert all(sev in ("error", "info") and text for sev, text in CODES.values())
