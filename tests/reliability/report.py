"""``make reliability``: run every reliability harness at the sizes the README quotes, check
every figure, and write the README's "Reliability" tables.

The sizes are those of ``sizes.py``, which the slow tests run too; each figure is judged by
the same rules the tests assert (``assert_crash_safe``, ``race_failures``, the disk-full and
hostile promises), so a figure is only printed by a run that checked it. Every failure
counter is a column. Any broken promise, or a harness that raised, makes the command exit 1
after listing the failures; the tables are still written, headed FAILED.

    python -m tests.reliability.report [--only crash,concurrency,diskfull,hostile] [--small]
                                       [--out FILE] [--write-readme]

``--out``: where the tables go (default ``tests/reliability/out/reliability.md``).
``--write-readme``: also replace the README's section between ``<!-- reliability:begin -->``
and ``<!-- reliability:end -->`` with them; only a passing run of every part at full size
may do that. ``--small``: the default test suite's sizes, for development. It takes tens of
minutes on two cores at full size.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from tests.reliability import sizes as z

PARTS = ("crash", "concurrency", "diskfull", "hostile")
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "reliability.md"
BEGIN, END = "<!-- reliability:begin -->", "<!-- reliability:end -->"


class Part:
    """One harness's section: markdown lines, the failures found, and one summary clause."""

    def __init__(self, name: str):
        self.name, self.lines, self.failures, self.summary = name, [], [], ""

    def check(self, label: str, fn: Callable[[], object]) -> None:
        """Run an assertion helper; an AssertionError is a failure of ``label``."""
        try:
            fn()
        except AssertionError as e:
            self.failures.append(f"{label}: {str(e)[:1500] or 'assertion failed'}")


def _sum(rows: list[dict]) -> dict:
    """Crash figures of several parts of one sweep, added up."""
    total = dict(rows[0])
    for row in rows[1:]:
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                total[key] = total[key] + value
            elif isinstance(value, list):
                total[key] = total[key] + value
    total["kill_points"] = sorted(set(total["kill_points"]))
    total["steps_total"] = max(r["steps_total"] for r in rows)
    return total


# --- crashes ---------------------------------------------------------------------------------


def crash_part(workdir: Path, small: bool) -> Part:
    from tests.hub.server import HubServer
    from tests.reliability import crash_scenarios as s
    from tests.reliability.crash import assert_crash_safe, run_random_kills, run_step_kills

    part = Part("crash")
    random_trials, random_parts = (10, 1) if small else (z.RANDOM_KILLS, z.RANDOM_KILL_PARTS)
    per_part = random_trials // random_parts
    every = 4 if small else None  # small: sampled steps instead of every step
    sweeps: list[tuple[str, Callable[[Path], list[dict]], Callable[[dict], None]]] = [
        ("import-model, SIGKILL at a random moment",
         lambda w: [run_random_kills(s.import_fresh(), per_part, z.RANDOM_KILL_SEED + p, w / f"random-{p}")
                    for p in range(random_parts)],
         lambda f: assert_crash_safe(f, trials=random_trials, min_points=random_trials // 4)),
        ("import-model, killed at every mutating step",
         lambda w: ([run_step_kills(s.import_fresh(), every, w)] if small else
                    [run_step_kills(s.import_fresh(), None, w / f"steps-{p}", share=(p, z.IMPORT_STEP_PARTS))
                     for p in range(z.IMPORT_STEP_PARTS)]),
         lambda f: assert_crash_safe(f, trials=every or f["steps_total"], min_points=(every or f["steps_total"]) - 2,
                                     max_unreached=2)),
        ("import-model next to another model, sampled steps",
         lambda w: [run_step_kills(s.import_shared(), 3 if small else z.SHARED_IMPORT_STEPS, w)],
         lambda f: assert_crash_safe(f, trials=f["trials"] + f["unreached"] if small else z.SHARED_IMPORT_STEPS,
                                     min_points=3 if small else z.SHARED_IMPORT_STEPS)),
    ]
    for label, scenario in (("delete-model --keep-view", s.delete()), ("delete-model --delete-files", s.delete(True)),
                            ("gc --grace 0", s.gc_after_delete()), ("validate-registry --fix", s.fix_breakages())):
        sweeps.append((f"{label}, {'sampled' if small else 'every'} step",
                       lambda w, sc=scenario: [run_step_kills(sc, 3 if small else None, w)],
                       lambda f: assert_crash_safe(f, trials=3 if small else f["steps_total"],
                                                   min_points=3 if small else f["steps_total"])))
    train_steps, hub_steps = (1, 1) if small else (z.TRAIN_STEPS, z.HUB_STEPS)
    sweeps.append(("train --resume (checkpoints), sampled steps",
                   lambda w: [run_step_kills(s.train_resume(), train_steps, w)],
                   lambda f: assert_crash_safe(f, trials=train_steps, min_points=train_steps)))
    part.lines += [
        "**Crashes.** A command is SIGKILLed at a random moment, or stopped at its N-th mutating",
        "filesystem step (every write goes through `store/fs/fsops.py`, which counts each step at the",
        "fault seam of `store/fs/faults.py`, `MODELSTORE_FAULT=kill@N` / `enospc@N` / `count`, that the",
        "harness drives), for every N; then the",
        "same command is run again and must succeed and leave what an uninterrupted run leaves.",
        "A trial is a real mid-run kill: an attempt whose command finished before the signal (or,",
        "at a random moment, was killed before its first mutating step, having written nothing)",
        "is re-drawn and counted only as such; a step no run reached is counted as unreached.", "",
        "| crash scenario | attempts | re-drawn: finished first | re-drawn: nothing written | "
        "unreached steps | **trials (real kills)** | kill points | corrupted stores | failed re-runs |",
        "|---|---|---|---|---|---|---|---|---|"]
    keys = ("attempts", "redrawn_finished", "redrawn_before_first_write", "unreached", "trials",
            "corrupted", "rerun_failures")
    totals = dict.fromkeys(keys, 0)

    def row(label: str, figures: dict) -> None:
        for k in keys:
            totals[k] += figures[k]
        part.lines.append(f"| {label} | {figures['attempts']} | {figures['redrawn_finished']} | "
                          f"{figures['redrawn_before_first_write']} | {figures['unreached']} | "
                          f"**{figures['trials']}** | {len(set(figures['kill_points']))} of "
                          f"{figures['steps_total']} | {figures['corrupted']} | {figures['rerun_failures']} |")

    for label, run, rule in sweeps:
        try:
            figures = _sum(run(workdir / label.split(",")[0].replace(" ", "-")))
        except Exception:
            part.failures.append(f"{label}: the harness raised:\n{traceback.format_exc()[-1500:]}")
            continue
        part.check(label, lambda: rule(figures))
        row(label, figures)
    try:
        with HubServer() as hub:
            os.environ.update(HF_HOME=str(workdir / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1")
            figures = run_step_kills(s.hub_import(hub), hub_steps, workdir / "hub")
        label = "import-model from the Hub, sampled steps"
        part.check(label, lambda: assert_crash_safe(figures, trials=hub_steps, min_points=hub_steps))
        row(label, figures)
    except Exception:
        part.failures.append(f"hub import: the harness raised:\n{traceback.format_exc()[-1500:]}")
    part.lines.append(f"| **total** | **{totals['attempts']}** | **{totals['redrawn_finished']}** | "
                      f"**{totals['redrawn_before_first_write']}** | **{totals['unreached']}** | "
                      f"**{totals['trials']}** | | **{totals['corrupted']}** | **{totals['rerun_failures']}** |")
    part.summary = (f"{totals['trials']} crash trials (real mid-run kills, of {totals['attempts']} attempts), "
                    f"{totals['corrupted']} corrupted stores, {totals['rerun_failures']} failed re-runs")
    return part


# --- concurrency -----------------------------------------------------------------------------


def concurrency_part(workdir: Path, small: bool) -> Part:
    from tests.reliability.concurrency import run_all

    part = Part("concurrency")
    part.lines += [
        "**Concurrency.** Real processes started together behind a gate. With the lock, at least",
        "one process must have waited for it (the race contended) and nothing may be lost;",
        "without it (`MODELSTORE_NO_LOCK=1`) the store must stay sound and every read parse, and",
        "the register/delete twin must lose updates (run again on a fresh store, up to",
        f"{z.NO_LOCK_TRIES} tries, until it does): the race the lock prevents is real.", "",
        "| race | lock | processes / updates | waited for the lock | failed | crashed | lost updates | "
        "reads (unparsable, missing) | duplicate blobs | temp left | corrupted stores |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    try:
        rows = run_all(workdir, full=not small)
    except Exception:
        part.failures.append(f"the harness raised:\n{traceback.format_exc()[-1500:]}")
        return part
    lost_with = lost_without = waited = reads = unparsable = 0
    for r in rows:
        part.failures += r["failures_found"]
        size = r.get("updates") or r.get("processes") or r.get("imports") or r.get("rounds")
        read = f"{r['reads']} ({r['unparsable_reads']}, {r['missing_reads']})" if "reads" in r else "-"
        lost = r.get("lost_updates", "-")
        if "tries" in r:
            lost = f"{lost} (try {r['tries']})"
        part.lines.append(
            f"| {r['race']} | {'on' if r['lock'] else 'off'} | {size} | {r['waited']} | {r['failed']} | "
            f"{r['crashed']} | {lost} | {read} | {r.get('duplicate_blobs', '-')} | {r['temp_files_left']} | "
            f"{r['corrupted']} |")
        if r["lock"]:
            lost_with += r.get("lost_updates", 0)
            waited += r["waited"]
        elif r["race"] == "register/delete":
            lost_without += r["lost_updates"]
        reads += r.get("reads", 0)
        unparsable += r.get("unparsable_reads", 0)
    part.lines += [
        "",
        "`failed` with `gc --grace 0` racing an import: gc may collect a blob the import wrote moments",
        "before; that import then fails with a line saying so and succeeds when run again (the",
        "default grace of 1 hour spares everything in flight). `same import` without the lock:",
        "a writer may find the name mid-commit by another and refuse it as taken."]
    part.summary = (f"{lost_with} lost updates with the lock ({waited} processes waited for it), "
                    f"{lost_without} lost without it; {reads} concurrent reads, {unparsable} unparsable")
    return part


# --- disk full -------------------------------------------------------------------------------


def diskfull_part(workdir: Path, small: bool) -> Part:
    from tests.reliability.diskfull import FIGURES, run_enospc_steps
    from tests.reliability.diskfull_fs import CASES, MountUnavailable, mount_method, run_case
    from tests.reliability.diskfull_scenarios import SCENARIOS

    part = Part("diskfull")
    counters = list(FIGURES.values())
    part.lines += [
        "**Disk full.** ENOSPC at every mutating step (`MODELSTORE_FAULT=enospc@N` makes the real",
        "operation fail as a full disk does: a write puts part of its data into the file, then the",
        "kernel's `OSError(ENOSPC)` is raised inside it and mapped by the same code as a real one),",
        "and a real tmpfs too small for the work: one line naming ENOSPC and the path, exit code 1,",
        "no partial object under a final name, the registry unchanged (or, past the commit point,",
        "the change whole and said so), the source untouched, no temp file left, and the same",
        "command succeeds once space is freed.", "",
        "| ENOSPC at every step | steps | injected | after the commit | clear errors | "
        + " | ".join(k.replace("_", " ") for k in counters) + " | re-runs (steps shifted) |",
        "|---" * (6 + len(counters)) + "|"]
    injected = clear = broken = 0
    for name in SCENARIOS:
        try:
            f = run_enospc_steps(name, 3 if small else None, workdir / name)
        except Exception:
            part.failures.append(f"{name}: the harness raised:\n{traceback.format_exc()[-1500:]}")
            continue
        injected, clear = injected + f["injected"], clear + f["clear_errors"]
        broken += sum(f[k] for k in counters)
        part.failures += [f"{name}: {p}" for p in f["problems"][:20]]
        if any(f[k] for k in counters) or f["clear_errors"] != f["injected"] or not f["injected"]:
            part.failures.append(f"{name}: " + ", ".join(f"{k}={f[k]}" for k in ("injected", "clear_errors",
                                                                                 *counters)))
        if not small and f["injected"] != f["steps"]:
            part.failures.append(f"{name}: {f['injected']} of {f['steps']} steps injected")
        part.lines.append(f"| {name} | {f['steps']} | {f['injected']} | {f['after_commit']} | "
                          f"{f['clear_errors']} | " + " | ".join(str(f[k]) for k in counters)
                          + f" | {f['reruns']} |")
    part.lines += ["", "| real ENOSPC from the kernel (tmpfs) | exit | error line | broken promises | "
                   "after freeing space |", "|---|---|---|---|---|"]
    try:
        method = mount_method()
    except MountUnavailable as e:
        method = None
        part.lines.append(f"| skipped: {e} | | | | |")
    real = 0
    if method:
        from tests.reliability.diskfull_scenarios import tiny_source
        from tests.reliability.diskfull_fs import MODEL

        model = tiny_source(workdir / "fs-model", **MODEL)
        for case in CASES:
            try:
                f = run_case(case, workdir / f"fs-{case}", model)
            except Exception:
                part.failures.append(f"tmpfs {case}: the harness raised:\n{traceback.format_exc()[-1500:]}")
                continue
            real += 1
            part.failures += [f"tmpfs {case}: {p}" for p in f["problems"] + f["retry_problems"]]
            if not f["error_ok"]:
                part.failures.append(f"tmpfs {case}: unexpected outcome: exit {f['exit']}: {f['error']}")
            line = f["error"].replace(str(f["mount"]), "…").replace("|", "/")[:90]
            part.lines.append(f"| {case} | {f['exit']} | `{line}` | {len(f['problems'])} | "
                              f"{'ok' if not f['retry_problems'] else len(f['retry_problems'])} |")
        part.lines += ["", f"(tmpfs mounted {'as root' if method == 'root' else 'in a user namespace, `unshare -Urm`'}.)"]
    part.summary = (f"{injected} ENOSPC injections, {clear} clear errors, {broken} broken promises; "
                    + (f"{real} cases of a real full tmpfs" if method else "no real tmpfs (could not mount)"))
    return part


# --- hostile input ---------------------------------------------------------------------------


def hostile_part(workdir: Path, small: bool) -> Part:
    from tests.reliability.hostile import CASES, CATEGORIES, run_hostile

    part = Part("hostile")
    cases = [next(c for c in CASES if c.category == k and not c.slow) for k in CATEGORIES] if small else None
    try:
        f = run_hostile(cases, workdir=workdir)
    except Exception:
        part.failures.append(f"the harness raised:\n{traceback.format_exc()[-1500:]}")
        return part
    part.failures += f["failed"]
    for key in ("accepted", "wrote_outside", "store_changed", "tracebacks"):
        if f[key]:
            part.failures.append(f"hostile: {key} = {f[key]}")
    part.lines += [
        "**Hostile input.** Each case through the real CLI, next to a sentinel folder outside the",
        "workspace: the exact error, one line, no traceback, the workspace byte-identical, the",
        "sentinel and the HF cache untouched, and no marker file created by any payload.", "",
        "| hostile input | tried | accepted | wrote outside the store | store changed | tracebacks | "
        "failed (any broken promise) |", "|---|---|---|---|---|---|---|"]
    for category, r in f["by_category"].items():
        part.lines.append(f"| {category} | {r['tried']} | {r['accepted']} | {r['wrote_outside']} | "
                          f"{r['store_changed']} | {r['tracebacks']} | {r['failed']} |")
    part.lines.append(f"| **total** | **{f['tried']}** | **{f['accepted']}** | **{f['wrote_outside']}** | "
                      f"**{f['store_changed']}** | **{f['tracebacks']}** | **{len(f['failed'])}** |")
    part.summary = (f"{f['tried']} hostile inputs, {f['accepted']} accepted, {f['wrote_outside']} writes "
                    f"outside the store, {len(f['failed'])} failed")
    return part


BUILDERS = {"crash": crash_part, "concurrency": concurrency_part, "diskfull": diskfull_part,
            "hostile": hostile_part}


def render(parts: list[Part], small: bool, minutes: float) -> str:
    failures = [f for p in parts for f in p.failures]
    head = "**FAILED**: " + f"{len(failures)} broken promises (listed by the run). " if failures else ""
    sizes = "the default tests' small sizes (`--small`)" if small else "full size (`tests/reliability/sizes.py`)"
    lines = [f"{head}Generated by `make reliability` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores "
             f"({platform.machine()}), {minutes:.0f} min, at {sizes}; every figure below was checked by "
             "that run, which exits 1 on any broken promise: "
             + "; ".join(f"**{p.summary}**" for p in parts if p.summary) + ".", ""]
    for p in parts:
        lines += p.lines + [""]
    return "\n".join(lines).rstrip() + "\n"


def write_readme(section: str, readme: Path = README) -> None:
    text = readme.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"{readme}: expected one {BEGIN} and one {END}")
    before, rest = text.split(BEGIN)
    _, after = rest.split(END)
    readme.write_text(f"{before}{BEGIN}\n{section}{END}{after}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    parser.add_argument("--small", action="store_true", help="the default tests' sizes (development)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the tables are written")
    parser.add_argument("--write-readme", action="store_true", help="regenerate the README's section")
    args = parser.parse_args(argv)
    names = args.only.split(",")
    unknown = sorted(set(names) - set(PARTS))
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")
    if args.write_readme and (args.small or set(names) != set(PARTS)):
        parser.error("--write-readme needs every part at full size (no --small, no --only)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started, parts = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="modelstore-reliability-") as tmp:
        for name in names:
            begun = time.perf_counter()
            part = BUILDERS[name](Path(tmp) / name, args.small)
            parts.append(part)
            print(f"({name}: {time.perf_counter() - begun:.0f} s, {len(part.failures)} failures)",
                  file=sys.stderr, flush=True)
    section = render(parts, args.small, (time.perf_counter() - started) / 60)
    print(section)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(section)
    failures = [f for p in parts for f in p.failures]
    if failures:
        print(f"FAILED: {len(failures)} broken promises:", file=sys.stderr)
        for failure in failures:
            print(f"- {failure}", file=sys.stderr)
        return 1
    if args.write_readme:
        write_readme(section)
        print(f"wrote the reliability section of {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
