"""Symlinks planted in ``models/`` and ``.modelstore/`` pointing outside the store.

End to end: every (plant, writing command) pair of ``hostile_links.EXPECTED`` through
``python main.py``; the pair each plant is most dangerous with runs by default, the rest of
the matrix is slow. Outside files must stay byte-identical (mode and mtime too) and never be
deleted; each command refuses naming the link, or acts on the link itself.

Below them, the regressions at the root, in process: ``store.fs.fsops`` refuses to act inside a
linked folder, the lock file is never opened through a link, quarantine never moves out of one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from store.fs import fsops
from store.errors import UnsafePathError
from store.layout import Layout
from store.fs.lock import writer_lock
from store.quarantine import move_aside
from tests.reliability.hostile_links import LINK_CASES, RISKIEST_IDS
from tests.reliability.hostile_scene import (  # noqa: F401  (hostile_template is a fixture)
    assert_case_passes,
    case_params,
    hostile_template,
    make_scene,
    run_case,
    snapshot,
)

SLOW_IDS = {case.id for case in LINK_CASES} - RISKIEST_IDS


@pytest.mark.parametrize("case", case_params(LINK_CASES, SLOW_IDS))
def test_planted_link_is_refused_or_acted_on_itself(case, hostile_template, tmp_path):
    assert_case_passes(run_case(case, make_scene(tmp_path / "scene", hostile_template)))


@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path]:
    """``store/inner`` is a link to ``outside/``, which holds a file and a folder."""
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "file").write_text("precious")
    (outside / "folder" / "deep").write_text("precious too")
    (tmp_path / "store").mkdir()
    os.symlink(outside, tmp_path / "store" / "inner")
    return tmp_path / "store" / "inner", outside


@pytest.mark.parametrize("operation", [
    lambda inner: fsops.unlink(inner / "file"),
    lambda inner: fsops.rmtree(inner / "folder"),
    lambda inner: fsops.rename(inner / "file", inner.parent / "taken"),
    lambda inner: fsops.rename(inner.parent / "missing", inner / "file"),
    lambda inner: fsops.hardlink(inner / "file", inner.parent / "copy"),
    lambda inner: fsops.symlink("/etc/passwd", inner / "planted"),
    lambda inner: fsops.chmod(inner / "file", 0o444),
    lambda inner: fsops.touch(inner / "file"),
], ids=["unlink", "rmtree", "rename-from", "rename-onto", "hardlink", "symlink", "chmod", "touch"])
def test_fsops_never_acts_inside_a_linked_folder(operation, linked):
    inner, outside = linked
    before = snapshot(outside)
    with pytest.raises(UnsafePathError, match=f"{inner} is a symbolic link to {outside}"):
        operation(inner)
    assert snapshot(outside) == before


def test_chmod_never_follows_a_link_to_a_file(linked, tmp_path):
    inner, outside = linked
    os.symlink(outside / "file", tmp_path / "store" / "object")
    before = snapshot(outside)
    with pytest.raises(UnsafePathError, match="object is a symbolic link to"):
        fsops.chmod(tmp_path / "store" / "object", 0o444)
    assert snapshot(outside) == before


@pytest.mark.parametrize("existing", [False, True], ids=["dangling", "to-a-file"])
def test_the_lock_file_is_never_opened_through_a_link(existing, tmp_path):
    layout = Layout(tmp_path / "ws")
    layout.store.mkdir(parents=True)
    target = tmp_path / "outside-lock"
    if existing:
        target.write_text("precious")
    os.symlink(target, layout.lock_file)
    with pytest.raises(UnsafePathError, match="lock is a symbolic link to"):
        with writer_lock(layout):
            pass
    assert target.exists() == existing and (not existing or target.read_text() == "precious")


def test_quarantine_refuses_to_move_an_object_out_of_a_linked_fan_and_writes_no_record(tmp_path):
    layout = Layout(tmp_path / "ws")
    layout.create()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ("1" * 62)).write_text("an object outside the store")
    os.symlink(outside, layout.objects / "ab")
    with pytest.raises(UnsafePathError, match="objects/ab is a symbolic link"):
        move_aside(layout, layout.objects / "ab" / ("1" * 62), "objects", "corrupt", digest="ab" + "1" * 62)
    assert (outside / ("1" * 62)).read_text() == "an object outside the store"
    assert list(layout.quarantine.iterdir()) == []


def test_quarantine_never_creates_its_folders_through_a_linked_kind_folder(tmp_path):
    layout = Layout(tmp_path / "ws")
    layout.create()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, layout.quarantine / "orphans")
    (layout.root / "stray").mkdir()
    with pytest.raises(UnsafePathError, match="quarantine/orphans is a symbolic link"):
        move_aside(layout, layout.root / "stray", "orphans", "not registered")
    assert list(outside.iterdir()) == [] and (layout.root / "stray").is_dir()
