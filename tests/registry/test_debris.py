"""``registry.debris`` owns the names of debris under ``models/``: every name the views code
creates there, on every path (build, rebuild, a rebuild taken back, removal), is recognised."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import debris, views
from registry.ingest.folder import import_folder
from store.fs import fsops


def test_every_debris_name_the_views_code_creates_is_recognised(workspace, tiny_model, monkeypatch):
    result = import_folder(workspace, tiny_model(), name="m-1")
    entry, manifest = workspace.read_registry().models["m-1"], result.manifest
    models = workspace.models_dir.resolve()
    created: list[str] = []

    def record(path) -> None:
        path = Path(path)
        if path.parent.resolve() == models and path.name.startswith("."):
            created.append(path.name)

    make_temp_dir, rename = fsops.make_temp_dir, fsops.rename
    monkeypatch.setattr(fsops, "make_temp_dir", lambda d, p: (lambda r: (record(r), r)[1])(make_temp_dir(d, p)))
    monkeypatch.setattr(fsops, "rename", lambda src, dst, *a, **k: (record(dst), rename(src, dst, *a, **k))[1])

    views.build_view(workspace, entry, manifest)  # staging, then an atomic exchange
    monkeypatch.setattr(fsops, "exchange", lambda a, b: False)
    views.build_view(workspace, entry, manifest)  # no exchange: the old view is moved aside
    with pytest.raises(RuntimeError):
        with views.view_in_place(workspace, entry, manifest):
            raise RuntimeError("the registry write failed")  # taken back: the new view set aside
    views.remove_view(workspace, "m-1")  # renamed out of the way (then given back: still registered)

    kinds = {name.split("-", 2)[0] for name in created}
    assert kinds == {".view", ".old", ".deleted"}
    assert sum(name.startswith(".deleted-") for name in created) == 2  # set aside, and removed
    assert all(debris.is_debris(name) for name in created), created
    deleted = [name for name in created if name.startswith(".deleted-")]
    assert all(debris.is_deleted_view(name, "m-1") for name in deleted), deleted
    assert not any(debris.is_deleted_view(name, "m") for name in deleted)


def test_names_that_are_not_debris():
    assert not debris.is_debris("model")
    assert not debris.is_deleted_view(".deleted-other-12-ab.tmp", "model")
    assert not debris.is_deleted_view(".view-model-12-ab.tmp", "model")
