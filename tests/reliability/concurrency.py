"""Concurrency harness: real ``python main.py`` processes racing on one store, and the figures.

Four races, each a plain function returning a dict of figures (``corrupted`` is the number
of stores ``invariants.check_store`` found broken, so it must be 0 whatever happened):

- ``run_same_import``: N processes import the same folder under the same name at once.
  With the lock: all succeed (the later ones find the version registered, a no-op), one
  registry entry, no object beyond what that entry reaches, no temp file left.
- ``run_register_delete``: N workers each import (the blobs are stored already, so each is a
  view and a registry write) and delete names of their own while a reader parses
  registry.json in a loop and ``list-models`` runs in another. The final set of names is
  known exactly, so every lost update is counted.
- ``run_gc_vs_import``: ``gc`` runs back to back while imports of new models write blobs and
  one import deduplicates against objects gc is about to collect.
- ``run_delete_vs_import``: delete-model and import-model of one name at once; the outcome
  (exit statuses, registry, views) must be that of one of the two serial orders, computed
  on copies of the same starting store.

``run_all`` runs them all, with and without the lock, as rows of the reliability table;
``python -m tests.reliability.concurrency [--small]`` prints that table.

Each takes ``lock``: False sets MODELSTORE_NO_LOCK=1. The lock is what prevents lost updates
(a registry read-modify-write overtaken by another); without it they are expected and
counted, but the store must still never be corrupt (DESIGN: correctness must never depend
on the lock), and a reader must still only ever see a registry that parses.

Outside the promise, so not asserted: gc with neither the lock nor a grace period. Then
nothing stops it from collecting the objects of a registration committing at that moment
(measured: a registered manifest missing after 3 rounds).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from cli.errors import say
from store.errors import REMOVED_IN_FLIGHT_HINT
from tests.reliability.concurrency_tools import (
    Run,
    RegistryReader,
    model_state,
    object_digests,
    race,
    race_env,
    run_one,
    run_sequences,
    temp_debris,
    unreachable_objects,
)
from tests.reliability.invariants import check_store, registry_entries, settled, tree_digest

# How long the delete is held back, round after round: here an import past the gate takes
# 5-10 ms to commit, so the two cross at every step of the way (machine-dependent).
DELETE_DELAYS_S = (0.0, 0.006, 0.003, 0.009, 0.0015, 0.0075, 0.0045, 0.0105, 0.012, 0.005, 0.008, 0.002)
BACKDATE_S = 2 * 3600  # older than gc's default grace (1 h): garbage gc may take at once


def tiny_source(folder: Path, seed: int = 0) -> Path:
    """A tiny qwen2 model folder (deterministic per seed), written once."""
    from tests.fixtures.tiny import write_tiny_model

    if not (folder / "config.json").exists():
        settled(write_tiny_model(folder, "qwen2", seed=seed))
    return folder


def _import(source: Path, name: str, *extra: str) -> list[str]:
    return ["import-model", str(source), "--name", name, "-y", *extra]


def _delete(name: str) -> list[str]:
    return ["delete-model", name, "-y", "--delete-files"]


def _run_counts(runs: list[Run]) -> dict:
    """``waited``: processes that found the writer lock taken and waited for it (the proof,
    with the lock on, that the race really contended)."""
    return dict(succeeded=sum(r.ok for r in runs), failed=sum(not r.ok for r in runs),
                crashed=sum(r.crashed for r in runs), waited=sum(r.waited for r in runs))


def _serial(root: Path, commands: list[list[str]], env: dict[str, str]) -> list[Run]:
    runs = [run_one(root, args, env) for args in commands]
    failed = [r.describe() for r in runs if not r.ok]
    if failed:
        raise RuntimeError(f"setup command failed: {failed[0]}")
    return runs


def run_same_import(workdir: Path, processes: int = 8, lock: bool = True) -> dict:
    """``processes`` imports of one folder under one name, released at the same instant."""
    root = workdir / "store"
    source = tiny_source(workdir / "src")
    before = tree_digest(source)
    runs = race(root, [_import(source, "same")] * processes, race_env(lock), workdir / "gate")
    problems = check_store(root, [(source, before)])
    return dict(processes=processes, **_run_counts(runs),
                registry_entries=len(registry_entries(root)), objects=len(object_digests(root)),
                duplicate_blobs=len(unreachable_objects(root)), temp_files_left=len(temp_debris(root)),
                temp_files=temp_debris(root), corrupted=int(bool(problems)), problems=problems,
                failures=[r.describe() for r in runs if not r.ok])


def register_delete_plan(source: Path, processes: int, rounds: int) -> tuple[list[list[list[str]]], set[str]]:
    """Worker i imports p{i}-0 .. p{i}-{rounds-1} and, after each odd j, deletes p{i}-{j-1}.

    Returns the command sequences and the exact set of names that must be registered at the
    end (with "base", registered before the race).
    """
    sequences, expected = [], {"base"}
    for i in range(processes):
        commands = []
        for j in range(rounds):
            commands.append(_import(source, f"p{i}-{j}"))
            expected.add(f"p{i}-{j}")
            if j % 2 == 1:
                commands.append(_delete(f"p{i}-{j - 1}"))
                expected.discard(f"p{i}-{j - 1}")
        sequences.append(commands)
    return sequences, expected


def run_register_delete(workdir: Path, processes: int = 16, rounds: int = 4, lock: bool = True) -> dict:
    """``processes`` workers registering and deleting distinct names, a reader watching."""
    root = workdir / "store"
    source = tiny_source(workdir / "src")
    env = race_env(lock)
    _serial(root, [_import(source, "base")], env)
    sequences, expected = register_delete_plan(source, processes, rounds)
    with RegistryReader(root, env) as reader:
        results = run_sequences(root, sequences, env)
    runs = [run for worker in results for run in worker]
    registered = set(registry_entries(root))
    missing, unexpected = sorted(expected - registered), sorted(registered - expected)
    # A delete that finds no such model means the import of that name was lost (and the
    # name is absent at the end, as expected, so the set comparison alone would miss it).
    lost_imports = sorted(r.args[1] for r in runs
                          if r.args[0] == "delete-model" and "no model named" in r.error)
    problems = check_store(root, [])
    watch = reader.watch
    return dict(processes=processes, rounds=rounds, updates=len(runs), **_run_counts(runs),
                lost_updates=len(missing) + len(unexpected) + len(lost_imports),
                missing=missing, unexpected=unexpected, lost_imports=lost_imports,
                reads=watch.reads, unparsable_reads=watch.unparsable, missing_reads=watch.missing,
                list_runs=watch.list_runs, list_failures=watch.list_failures, read_examples=watch.examples,
                temp_files_left=len(temp_debris(root)), corrupted=int(bool(problems)), problems=problems,
                failures=[r.describe() for r in runs if not r.ok and r.args[1] not in lost_imports])


def _repeat_until(root: Path, args: list[str], env: dict[str, str], stop: threading.Event,
                  out: list[Run]) -> None:
    """Run ``args`` back to back (at least once) until ``stop`` is set."""
    while True:
        out.append(run_one(root, args, env))
        if stop.is_set():
            return


def _backdate_unreachable(root: Path) -> set[str]:
    """Make every unreachable object look two hours old (gc's grace has passed for it)."""
    doomed = unreachable_objects(root)
    past = time.time() - BACKDATE_S
    for digest in doomed:
        os.utime(root / ".modelstore" / "objects" / digest[:2] / digest[2:], (past, past))
    return doomed


def run_gc_vs_import(workdir: Path, rounds: int = 3, importers: int = 3, lock: bool = True,
                     grace: str = "1h") -> dict:
    """``gc --grace GRACE`` back to back while imports run, ``rounds`` times.

    Each round first leaves two deleted models' objects as old garbage: "garbage-R", which
    nothing brings back (gc must collect it during the race), and "revived-R", which one of
    the racing imports re-imports (it deduplicates against objects gc is taking). The other
    importers import new models (distinct weights: new blobs). With a grace period nothing
    in flight may be lost: every import succeeds. With ``grace="0"`` gc may take an
    import's fresh blobs; that import must then fail with a one-line error and succeed when
    run again. Either way every registered model must validate.
    """
    root = workdir / "store"
    sources = workdir / "sources"
    env = race_env(lock)
    _serial(root, [_import(tiny_source(sources / "base"), "base")], env)
    imports: list[Run] = []
    gc_runs: list[Run] = []
    garbage: set[str] = set()
    revived: set[str] = set()
    seed = 100
    for r in range(rounds):
        garbage_src = tiny_source(sources / f"garbage-{r}", seed := seed + 1)
        revived_src = tiny_source(sources / f"revived-{r}", seed := seed + 1)
        _serial(root, [_import(garbage_src, f"garbage-{r}"), _delete(f"garbage-{r}")], env)
        garbage |= _backdate_unreachable(root)
        _serial(root, [_import(revived_src, f"revived-{r}"), _delete(f"revived-{r}")], env)
        revived |= _backdate_unreachable(root) - garbage
        sequences = [[_import(revived_src, f"back-{r}")]]
        for k in range(importers):
            new = [tiny_source(sources / f"new-{r}-{k}-{n}", seed := seed + 1) for n in range(2)]
            sequences.append([_import(src, src.name) for src in new])
        stop = threading.Event()
        gc_thread = threading.Thread(target=_repeat_until,
                                     args=(root, ["gc", "--grace", grace], env, stop, gc_runs))
        gc_thread.start()
        imports += [run for worker in run_sequences(root, sequences, env) for run in worker]
        stop.set()
        gc_thread.join()
    left = object_digests(root)
    failed = [r for r in imports if not r.ok]
    retried = [run_one(root, r.args, env) for r in failed]  # what a user does after a failure
    registered = registry_entries(root)
    # An import that succeeded but whose name is not registered lost its registry update to
    # another writer's (only possible without the lock); one registered under another
    # model's id would be a mix-up.
    lost_registrations = sorted(r.args[3] for r in imports if r.ok and r.args[3] not in registered)
    not_intact = sorted(r.args[3] for r in imports if r.ok and r.args[3] in registered
                        and registered[r.args[3]]["model_id"] != Path(r.args[1]).name)
    problems = check_store(root, [(src, tree_digest(src)) for src in sorted(sources.iterdir())])
    counts = _run_counts(imports)
    counts["waited"] += sum(r.waited for r in gc_runs)
    return dict(rounds=rounds, imports=len(imports), **counts,
                failed_in_flight=sum(say(REMOVED_IN_FLIGHT_HINT) in r.error for r in failed),
                retried_ok=sum(r.ok for r in retried), gc_runs=len(gc_runs),
                gc_failed=sum(not r.ok for r in gc_runs), gc_crashed=sum(r.crashed for r in gc_runs),
                garbage_objects=len(garbage), garbage_left=len(garbage & left),
                revived_objects=len(revived), lost_updates=len(lost_registrations),
                lost_registrations=lost_registrations, not_intact=not_intact,
                temp_files_left=len(temp_debris(root)), corrupted=int(bool(problems)), problems=problems,
                failures=[r.describe() for r in failed + [g for g in gc_runs if not g.ok]],
                retry_failures=[r.describe() for r in retried if not r.ok])


def _outcome(root: Path, runs: list[Run]) -> tuple:
    return tuple(r.ok for r in runs), model_state(root)


def _brief(outcome: tuple) -> str:
    """An outcome in one line: exit statuses, x's model_id, whether x's view exists."""
    exits, state = outcome
    held = state["registry"].get("x", ("-",))[0]
    return f"exits ok={exits} registry x={held} view x={'x' in state['views']}"


def run_delete_vs_import(workdir: Path, rounds: int = 4, lock: bool = True) -> dict:
    """delete-model X racing import-model X, ``rounds`` times, each from the same start:
    X registered from source A. Even rounds re-import A under X (a no-op while X is
    registered), odd rounds import B under X with ``--on-conflict overwrite``. The race's
    outcome must equal delete-then-import or import-then-delete, run serially on copies."""
    env = race_env(lock)
    start = workdir / "start"
    src_a, src_b = tiny_source(workdir / "src-a", 1), tiny_source(workdir / "src-b", 2)
    _serial(start, [_import(src_a, "x"), _import(src_b, "other")], env)
    variants = [_import(src_a, "x"), _import(src_b, "x", "--on-conflict", "overwrite")]
    serial: list[dict] = []  # per variant: order -> outcome, from the same start
    for v, importing in enumerate(variants):
        serial.append({})
        for order, commands in (("delete-first", [_delete("x"), importing]),
                                ("import-first", [importing, _delete("x")])):
            copy = workdir / f"serial-{v}-{order}"
            shutil.copytree(start, copy, symlinks=True)
            done = {tuple(run.args): run for run in (run_one(copy, args, env) for args in commands)}
            serial[v][order] = _outcome(copy, [done[tuple(_delete("x"))], done[tuple(importing)]])
    matched = {"delete-first": 0, "import-first": 0}
    orders: list[str] = []  # per round: which serial order the race came out as
    mismatches, runs, problems_all, debris = [], [], [], 0
    for r in range(rounds):
        importing = variants[r % 2]
        root = workdir / f"round-{r}-race"
        shutil.copytree(start, root, symlinks=True)
        # The delete is quicker than the import (which hashes its source first): hold it
        # back by a different amount each round so the two cross at different steps.
        delay = DELETE_DELAYS_S[(r // 2) % len(DELETE_DELAYS_S)]
        raced = race(root, [_delete("x"), importing], env, workdir / f"gate-{r}", [delay, 0.0])
        runs += raced
        outcome = _outcome(root, raced)
        order = next((o for o, expected in serial[r % 2].items() if outcome == expected), None)
        if order is None:
            mismatches.append(dict(round=r, exits=[x.describe() for x in raced], state=_brief(outcome),
                                   serial={o: _brief(e) for o, e in serial[r % 2].items()}))
        else:
            matched[order] += 1
        orders.append(f"{delay * 1000:g}ms:{order or 'neither'}")
        problems = check_store(root, [])
        problems_all += [f"round {r}: {p}" for p in problems]
        debris += len(temp_debris(root))
    return dict(rounds=rounds, **_run_counts(runs), failures=[r.describe() for r in runs if not r.ok],
                matched_delete_first=matched["delete-first"],
                matched_import_first=matched["import-first"], mismatched=len(mismatches),
                orders=orders, mismatches=mismatches, temp_files_left=debris,
                corrupted=len({p.split(":")[0] for p in problems_all}), problems=problems_all)


def run_register_delete_losing(workdir: Path, processes: int, rounds: int, tries: int) -> dict:
    """The register/delete race without the lock, run again (up to ``tries`` times, each on a
    fresh store) until it loses an update: the twin that shows the race the lock prevents is
    real. The figures are those of the last try, with ``tries`` (how many were run)."""
    for attempt in range(1, tries + 1):
        figures = run_register_delete(workdir / f"try-{attempt}", processes, rounds, lock=False)
        if figures["lost_updates"] or attempt == tries:
            return dict(figures, tries=attempt)
    raise AssertionError("unreachable")


def race_failures(row: dict) -> list[str]:
    """Every promise a race row broke, as lines (empty: it passed): what the tests assert and
    what ``make reliability`` fails on. With the lock: nothing lost, and at least one process
    waited for it (the race contended; not asked of delete vs import, see below). Without: never corrupt, never a crash, every read
    parses, and the register/delete twin lost at least one update (the race is real)."""
    race, lock, out = row["race"], row["lock"], []

    def need(ok: bool, what: str) -> None:
        if not ok:
            out.append(f"{race} (lock {'on' if lock else 'off'}): {what}")

    need(row["crashed"] == 0, f"{row['crashed']} processes crashed")
    need(row["corrupted"] == 0 and not row["problems"], f"store corrupted: {row['problems'][:3]}")
    need(row["temp_files_left"] == 0, f"{row['temp_files_left']} temp files left")
    if lock and race != "delete vs import":
        # (delete vs import: two processes whose lock holds last milliseconds; they rarely
        # overlap, and what that race proves is that its outcome equals a serial order.)
        need(row["waited"] >= 1, "no process waited for the lock: the race did not contend")
    if race == "same import":
        need(row["registry_entries"] == 1, f"{row['registry_entries']} registry entries")
        if lock:
            need(row["failures"] == [] and row["duplicate_blobs"] == 0,
                 f"failures {row['failures'][:2]}, {row['duplicate_blobs']} duplicate blobs")
        else:
            refused = [f for f in row["failures"] if "is already registered" in f]
            need(row["failures"] == refused, f"failures {row['failures'][:2]}")
            need(row["duplicate_blobs"] < row["processes"], f"{row['duplicate_blobs']} duplicate blobs")
    elif race == "register/delete":
        need(row["reads"] > 0 and row["list_runs"] > 0, "the reader never read")
        need(row["unparsable_reads"] == 0 and row["missing_reads"] == 0 and row["list_failures"] == 0,
             f"reads: {row['unparsable_reads']} unparsable, {row['missing_reads']} missing, "
             f"{row['list_failures']} list-models failures")
        need(row["failures"] == [], f"failures {row['failures'][:2]}")
        if lock:
            need(row["failed"] == 0 and row["lost_updates"] == 0,
                 f"{row['failed']} failed, {row['lost_updates']} lost updates")
        else:
            need(row["failed"] == len(row["lost_imports"]), f"{row['failed']} failed")
            need(row["lost_updates"] >= 1, f"no update lost without the lock in {row.get('tries', 1)} tries: "
                                            "the race was not shown to be real")
    elif race.startswith("gc"):
        need(row["gc_crashed"] == 0 and row["gc_failed"] == 0, f"gc: {row['gc_failed']} failed")
        need(row["not_intact"] == [], f"not intact: {row['not_intact']}")
        need(row["failed"] == row["failed_in_flight"] == row["retried_ok"] and row["retry_failures"] == [],
             f"{row['failed']} failed, {row['failed_in_flight']} in flight, {row['retried_ok']} retried ok")
        if race == "gc vs import":
            need(row["garbage_objects"] > 0 and row["garbage_left"] == 0,
                 f"{row['garbage_left']} of {row['garbage_objects']} garbage objects left")
        if lock:
            need(row["lost_updates"] == 0, f"{row['lost_updates']} lost updates")
            if race == "gc vs import":
                need(row["failed"] == 0, f"{row['failed']} imports failed")
    elif race == "delete vs import":
        need(row["failed"] == 0, f"failures {row['failures'][:2]}")
        if lock:
            need(row["mismatched"] == 0, f"{row['mismatched']} outcomes of no serial order")
    return out


def run_all(workdir: Path, full: bool = True) -> list[dict]:
    """Every race with and without the lock, as rows of the reliability table (full: the
    sizes of ``sizes.py``, which the slow tests run too), each with its ``failures_found``
    (``race_failures``)."""
    from tests.reliability import sizes as z

    if full:
        importers, registrars, rounds = z.SAME_IMPORT_PROCESSES, z.REGISTRARS, z.REGISTRAR_ROUNDS
        gc_rounds, gc_importers, delete_rounds = z.GC_ROUNDS, z.GC_IMPORTERS, z.DELETE_ROUNDS
    else:
        importers, registrars, rounds, gc_rounds, gc_importers, delete_rounds = 4, 8, 2, 1, 2, 4
    rows = []
    for lock in (True, False):
        names = (run_register_delete(workdir / "names-lock", registrars, rounds, True) if lock else
                 run_register_delete_losing(workdir / "names-nolock", registrars, rounds, z.NO_LOCK_TRIES))
        runs = [
            ("same import", run_same_import(workdir / f"same-{lock}", importers, lock)),
            ("register/delete", names),
            ("gc vs import", run_gc_vs_import(workdir / f"gc-{lock}", gc_rounds, gc_importers, lock=lock)),
            ("delete vs import", run_delete_vs_import(workdir / f"delete-{lock}", delete_rounds, lock)),
        ]
        if lock:
            runs.append(("gc --grace 0 vs import",
                         run_gc_vs_import(workdir / "gc0", gc_rounds, gc_importers, grace="0")))
        rows += [dict(race=race_name, lock=lock, **figures) for race_name, figures in runs]
    for row in rows:
        row["failures_found"] = race_failures(row)
    return rows


def main() -> None:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="Race real modelstore processes and print the figures.")
    parser.add_argument("--small", action="store_true", help="the default test suite's sizes")
    args = parser.parse_args()
    columns = ("processes", "updates", "imports", "rounds", "succeeded", "failed", "failed_in_flight",
               "crashed", "lost_updates", "duplicate_blobs", "reads", "unparsable_reads",
               "matched_delete_first", "matched_import_first", "mismatched", "temp_files_left", "corrupted")
    with tempfile.TemporaryDirectory() as workdir:
        rows = run_all(Path(workdir), full=not args.small)
    print("| race | lock | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for row in rows:
        cells = [str(row.get(c, "")) for c in columns]
        print(f"| {row['race']} | {'on' if row['lock'] else 'off'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
