"""``run_hostile``, the function the README's reliability table is printed from, on a sample:
the first fast case of every category, verified with ``check_store`` after each one."""

from __future__ import annotations

from tests.reliability.hostile import CASES, CATEGORIES, run_hostile
from tests.reliability.hostile_scene import hostile_template, make_scene  # noqa: F401  (a fixture)
from tests.reliability.invariants import check_store, registry_entries


def test_a_fresh_scene_is_sound(hostile_template, tmp_path):
    """What lets a refusal be judged by bytes alone: every case starts from a sound store."""
    scene = make_scene(tmp_path / "scene", hostile_template)
    assert check_store(scene.ws) == []
    assert list(registry_entries(scene.ws)) == ["good"]


def test_run_hostile_reports_every_category_and_no_input_accepted(hostile_template, tmp_path):
    sample = [next(c for c in CASES if c.category == category and not c.slow) for category in CATEGORIES]
    figures = run_hostile(sample, workdir=tmp_path, template=hostile_template)
    assert figures["failed"] == []
    assert {k: figures[k] for k in ("tried", "accepted", "wrote_outside", "store_changed", "tracebacks")} == {
        "tried": len(CATEGORIES), "accepted": 0, "wrote_outside": 0, "store_changed": 0, "tracebacks": 0}
    clean = {"tried": 1, "accepted": 0, "wrote_outside": 0, "store_changed": 0, "tracebacks": 0, "failed": 0}
    assert figures["by_category"] == {category: clean for category in CATEGORIES}
    assert set(CATEGORIES) == {"hub_listing", "names", "pickle", "remote_code", "repo_ids", "safetensors",
                               "symlinks"}


def test_the_catalogue_ids_are_unique_and_every_command_succeeding_says_why():
    ids = [(c.category, c.id) for c in CASES]
    assert len(ids) == len(set(ids))
    # An exit-0 case is a command that acts (on a link itself, or skipping the hostile file: its
    # check proves it), or a read-only one (generate): its workspace must stay byte-identical.
    assert all(c.exit_code or c.acts or c.args(_Dummy())[0] == "generate"
               for c in CASES if not c.category == "symlinks")


class _Dummy:
    """Enough of a Scene to spell out a command line."""

    def __getattr__(self, name):
        from pathlib import Path

        return Path("/scene") / name
