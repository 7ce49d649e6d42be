"""Concurrency, small: real ``python main.py`` processes racing on one store, with and without
the advisory lock (the full-size runs are in test_concurrency_slow.py).

With the lock every promise holds exactly: all succeed, nothing is lost or duplicated.
Without it (MODELSTORE_NO_LOCK=1) registry updates may be lost, which is what the lock is
for, but the store is never corrupt, no process crashes, a reader never sees a registry
that does not parse, and nothing is left behind.
"""

from __future__ import annotations

from tests.reliability.concurrency import (
    race_failures,
    run_delete_vs_import,
    run_gc_vs_import,
    run_register_delete,
    run_register_delete_losing,
    run_same_import,
)
from tests.reliability.sizes import NO_LOCK_TRIES


def contended(run, workdir, tries: int = NO_LOCK_TRIES) -> dict:
    """``run(folder)`` on a fresh folder until a process waited for the lock (the race really
    contended), at most ``tries`` times: whether two short lock holds overlap depends on the
    machine's load; the figures are the last run's."""
    for attempt in range(1, tries + 1):
        figures = run(workdir / f"try-{attempt}")
        if figures["waited"] >= 1:
            break
    return figures


def passes(race: str, lock: bool, figures: dict) -> None:
    """The rules ``make reliability`` applies to the same race (contention included)."""
    failures = race_failures(dict(figures, race=race, lock=lock))
    assert failures == [], failures


def test_same_import_with_the_lock_one_entry_one_copy_nothing_left(tmp_path):
    figures = contended(lambda w: run_same_import(w, processes=4, lock=True), tmp_path)
    passes("same import", True, figures)
    assert figures["waited"] >= 1  # the four really raced for the lock
    assert figures["failures"] == [] and figures["succeeded"] == 4 and figures["crashed"] == 0
    assert figures["registry_entries"] == 1
    assert figures["duplicate_blobs"] == 0  # every object is reached by the one entry
    assert figures["temp_files_left"] == 0
    assert figures["problems"] == [] and figures["corrupted"] == 0


def test_same_import_without_the_lock_duplicates_work_at_most(tmp_path):
    figures = run_same_import(tmp_path, processes=4, lock=False)
    passes("same import", False, figures)
    assert figures["waited"] == 0  # no lock, no waiting
    # Without the lock a writer may see the name mid-commit by another (its view being
    # swapped) and refuse it cleanly, as a taken name: never a crash, never corruption.
    refused = [f for f in figures["failures"] if "is already registered" in f]
    assert figures["failures"] == refused and figures["succeeded"] + len(refused) == 4
    assert figures["crashed"] == 0
    assert figures["registry_entries"] == 1
    # At most one extra manifest per extra writer (made in another second), for gc to take.
    assert figures["duplicate_blobs"] <= 3
    assert figures["temp_files_left"] == 0
    assert figures["problems"] == [] and figures["corrupted"] == 0


def test_register_delete_with_the_lock_loses_no_update(tmp_path):
    figures = contended(lambda w: run_register_delete(w, processes=4, rounds=3, lock=True), tmp_path)
    passes("register/delete", True, figures)
    assert figures["waited"] >= 1  # updates really contended: the lock made them wait
    assert figures["updates"] == 4 * (3 + 1)
    assert figures["failures"] == [] and figures["failed"] == 0 and figures["crashed"] == 0
    assert (figures["missing"], figures["unexpected"], figures["lost_imports"]) == ([], [], [])
    assert figures["lost_updates"] == 0
    assert figures["reads"] > 0 and figures["list_runs"] > 0
    assert figures["unparsable_reads"] == 0 and figures["missing_reads"] == 0
    assert figures["list_failures"] == 0, figures["read_examples"]
    assert figures["temp_files_left"] == 0
    assert figures["problems"] == [] and figures["corrupted"] == 0


def test_register_delete_without_the_lock_loses_updates_never_corrupts(tmp_path):
    """The twin of the test above: the same race without the lock loses updates (tried again,
    on a fresh store, until it does), so "0 lost with the lock" is the lock's doing."""
    # Eight workers: with four, three tries in a row sometimes lost nothing on 2 busy cores.
    figures = run_register_delete_losing(tmp_path, processes=8, rounds=2, tries=NO_LOCK_TRIES)
    passes("register/delete", False, figures)
    assert figures["lost_updates"] >= 1, figures["tries"]
    # The only failures allowed are deletes of names whose import was lost (counted).
    assert figures["failures"] == [] and figures["crashed"] == 0
    assert figures["failed"] == len(figures["lost_imports"])
    assert figures["unparsable_reads"] == 0 and figures["missing_reads"] == 0
    assert figures["list_failures"] == 0, figures["read_examples"]
    assert figures["temp_files_left"] == 0
    assert figures["problems"] == [] and figures["corrupted"] == 0


def test_gc_racing_imports_takes_nothing_in_flight(tmp_path):
    figures = contended(lambda w: run_gc_vs_import(w, rounds=1, importers=2, lock=True), tmp_path)
    passes("gc vs import", True, figures)
    assert figures["waited"] >= 1
    assert figures["imports"] == 1 + 2 * 2 and figures["gc_runs"] >= 1
    assert figures["failures"] == [] and figures["succeeded"] == figures["imports"]
    assert figures["crashed"] == 0 and figures["gc_crashed"] == 0
    assert figures["lost_updates"] == 0 and figures["not_intact"] == []
    # gc did work during the race: the old garbage went, the revived objects stayed.
    assert figures["garbage_objects"] > 0 and figures["garbage_left"] == 0
    assert figures["temp_files_left"] == 0
    assert figures["problems"] == [] and figures["corrupted"] == 0


def test_gc_without_grace_racing_imports_fails_them_cleanly_at_worst(tmp_path):
    figures = contended(lambda w: run_gc_vs_import(w, rounds=1, importers=2, lock=True, grace="0"), tmp_path)
    passes("gc --grace 0 vs import", True, figures)
    assert figures["crashed"] == 0 and figures["gc_failed"] == 0
    # An import whose fresh blobs gc took says so, registers nothing, and works when rerun.
    assert figures["failed"] == figures["failed_in_flight"] == figures["retried_ok"]
    assert figures["retry_failures"] == []
    assert figures["lost_updates"] == 0 and figures["not_intact"] == []
    assert figures["problems"] == [] and figures["corrupted"] == 0


def test_delete_racing_import_of_the_same_name_equals_a_serial_order(tmp_path):
    figures = run_delete_vs_import(tmp_path, rounds=4, lock=True)
    passes("delete vs import", True, figures)
    assert figures["mismatches"] == [] and figures["mismatched"] == 0
    assert figures["matched_delete_first"] + figures["matched_import_first"] == 4
    assert figures["failed"] == 0 and figures["crashed"] == 0
    assert figures["temp_files_left"] == 0
    assert figures["problems"] == [] and figures["corrupted"] == 0


def test_delete_racing_import_without_the_lock_never_corrupts(tmp_path):
    figures = run_delete_vs_import(tmp_path, rounds=2, lock=False)
    passes("delete vs import", False, figures)
    assert figures["crashed"] == 0 and figures["failed"] == 0, figures["failures"]
    assert figures["temp_files_left"] == 0
    assert figures["problems"] == [] and figures["corrupted"] == 0
