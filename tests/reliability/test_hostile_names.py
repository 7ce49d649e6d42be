"""Hostile model names and repo ids, each through ``python main.py``: refused with the exact
one-line error naming it, the store byte-identical, nothing written outside it.

The cases are data in ``tests/reliability/hostile.py``; ``hostile_scene.run_case`` judges them.
"""

from __future__ import annotations

import pytest

from registry.ingest.folder import import_folder
from registry.workspace import Workspace
from registry.errors import InvalidNameError
from tests.reliability.hostile import NAME_CASES, REPO_ID_CASES
from tests.reliability.hostile_scene import (  # noqa: F401  (hostile_template is a fixture)
    assert_case_passes,
    case_params,
    hostile_template,
    make_scene,
    run_case,
)
from tests.reliability.invariants import tree_digest


# Every case runs through main.py in process by default, and as a real subprocess for a sample
# (all of them when slow tests run): they share one code path, the name or repo id check.
CLI_SAMPLE = {"dotdot", "absolute", "newline", "case-of-registered", "delete-climb", "dotdot-x", "hf-climb"}
CASES = NAME_CASES + REPO_ID_CASES


@pytest.mark.parametrize("case", case_params([c for c in CASES if not c.slow]))
def test_hostile_name_or_repo_id_is_refused_naming_it(case, hostile_template, tmp_path):
    assert_case_passes(run_case(case, make_scene(tmp_path / "scene", hostile_template), in_process=True))


@pytest.mark.parametrize("case", case_params(CASES, sample=CLI_SAMPLE))
def test_hostile_name_or_repo_id_is_refused_by_python_main_py(case, hostile_template, tmp_path):
    assert_case_passes(run_case(case, make_scene(tmp_path / "scene", hostile_template)))


@pytest.mark.parametrize("name", ["a\x00b", "\x00", "good\x00/../../x"])
def test_nul_in_a_name_is_refused_by_the_library_before_any_write(name, hostile_template, tmp_path):
    """argv cannot carry NUL, so the library is the way in (the train config is the CLI one, slow)."""
    scene = make_scene(tmp_path / "scene", hostile_template)
    before = tree_digest(scene.ws)
    with pytest.raises(InvalidNameError) as info:
        import_folder(Workspace.open(scene.ws), scene.src, name=name)
    assert info.value.rule == "a name must not contain control characters (NUL, newline, tab, ...)"
    assert info.value.name == name
    assert tree_digest(scene.ws) == before


def test_the_catalogue_covers_every_hostile_name_of_the_issue():
    names = {case.id for case in NAME_CASES}
    assert {"dotdot", "absolute", "slash", "backslash", "leading-dot", "nul-via-train-config", "newline",
            "300-chars", "registry.json", "case-of-registered", "nfd-accent", "fullwidth-lookalike"} <= names
