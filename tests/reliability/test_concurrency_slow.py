"""Concurrency, full size: the races of the reliability table at the sizes it quotes
(``sizes.py``: 8 importers, 16 registrars, several rounds of gc and of delete against
import), with and without the lock, judged by the same rules as ``make reliability``
(``race_failures``): with the lock nothing is lost and at least one process waited for it;
without it the store is never corrupt and the register/delete twin loses updates."""

from __future__ import annotations

import pytest

from tests.reliability import sizes as z
from tests.reliability.concurrency import (
    race_failures,
    run_delete_vs_import,
    run_gc_vs_import,
    run_register_delete,
    run_register_delete_losing,
    run_same_import,
)

pytestmark = pytest.mark.slow


def passes(race: str, lock: bool, figures: dict) -> None:
    failures = race_failures(dict(figures, race=race, lock=lock))
    assert failures == [], failures


@pytest.mark.parametrize("lock", [True, False], ids=["lock", "no-lock"])
def test_eight_processes_import_the_same_model(tmp_path, lock):
    figures = run_same_import(tmp_path, processes=z.SAME_IMPORT_PROCESSES, lock=lock)
    passes("same import", lock, figures)
    assert figures["succeeded"] == z.SAME_IMPORT_PROCESSES


def test_sixteen_registrars_with_the_lock_lose_nothing(tmp_path):
    figures = run_register_delete(tmp_path, processes=z.REGISTRARS, rounds=z.REGISTRAR_ROUNDS, lock=True)
    passes("register/delete", True, figures)
    assert figures["updates"] == z.REGISTRARS * (z.REGISTRAR_ROUNDS + z.REGISTRAR_ROUNDS // 2)
    assert figures["lost_updates"] == 0 and figures["waited"] >= 1


def test_sixteen_registrars_without_the_lock_lose_updates_never_corrupt(tmp_path):
    """Lost updates are what the lock prevents: here they must happen (the race is real).
    What must hold without it: nothing crashes, every read parses, the store is sound."""
    figures = run_register_delete_losing(tmp_path, z.REGISTRARS, z.REGISTRAR_ROUNDS, z.NO_LOCK_TRIES)
    passes("register/delete", False, figures)
    assert figures["lost_updates"] >= 1


@pytest.mark.parametrize("lock", [True, False], ids=["lock", "no-lock"])
def test_gc_back_to_back_with_imports_takes_nothing_in_flight(tmp_path, lock):
    figures = run_gc_vs_import(tmp_path, rounds=z.GC_ROUNDS, importers=z.GC_IMPORTERS, lock=lock)
    passes("gc vs import", lock, figures)
    assert figures["imports"] == z.GC_ROUNDS * (1 + z.GC_IMPORTERS * 2) and figures["gc_runs"] >= z.GC_ROUNDS


def test_gc_without_grace_back_to_back_with_imports_fails_them_cleanly_at_worst(tmp_path):
    figures = run_gc_vs_import(tmp_path, rounds=z.GC_ROUNDS, importers=z.GC_IMPORTERS, lock=True, grace="0")
    passes("gc --grace 0 vs import", True, figures)


@pytest.mark.parametrize("lock", [True, False], ids=["lock", "no-lock"])
def test_delete_against_import_of_one_name(tmp_path, lock):
    figures = run_delete_vs_import(tmp_path, rounds=z.DELETE_ROUNDS, lock=lock)
    passes("delete vs import", lock, figures)
    if lock:
        assert figures["matched_delete_first"] + figures["matched_import_first"] == z.DELETE_ROUNDS
