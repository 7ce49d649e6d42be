"""Text renderings of validate-registry, --fix and gc results, for the CLI to print.

Pure functions from results to strings (no I/O, no click), tested directly.
"""

from __future__ import annotations

from pathlib import Path

from registry.space.gc import GcOutcome
from store.gc import GcPlan
from registry.check.findings import ValidationReport
from registry.repair.fix import RepairResult
from registry.repair.plan import RepairPlan
from cli.errors import command, say
from store.errors import Next
from registry.report import human_bytes, plural


def _validation_text(report: ValidationReport) -> str:
    return "\n".join([say(f.line()) for f in report.findings] + [report.summary()])


def _plan_text(plan: RepairPlan) -> str:
    if plan.empty and not plan.cannot:
        return "nothing to repair"
    lines = []
    if not plan.empty:
        count = sum(1 for s in plan.steps if not s.text.startswith("  "))
        lines.append(f"repair plan ({count} {'step' if count == 1 else 'steps'}; "
                     "* = moves or replaces files, kept in .modelstore/quarantine/):")
        for step in plan.steps:
            mark = "*" if step.destructive else "-"
            text = say(step.text)
            lines.append(f"    {text}" if text.startswith("  ") else f"  {mark} {text}")
    if plan.cannot:
        lines.append("cannot be repaired by --fix:")
        lines += [f"  ! {say(text)}" for text in plan.cannot]
    return "\n".join(lines)


def _outcome_text(result: RepairResult) -> str:
    if result.outcome is None:
        return "" if result.plan.empty else "dry run: nothing was changed"
    lines = ["done:"] + [f"  - {say(line)}" for line in result.outcome.done]
    if result.outcome.failed:
        lines.append("not repaired:")
        lines += [f"  ! {say(line)}" for line in result.outcome.failed]
    if result.after is not None:
        lines += [say(f.line()) for f in result.after.errors]
        lines.append(f"after repair: {result.after.summary('checked (what was written was verified)')}")
    return "\n".join(lines)


def gc_text(outcome: GcOutcome, root: Path) -> str:
    """gc's report (it may name ``gc --grace 0``, spelled as the command to type)."""
    plan, result = outcome.plan, outcome.result
    lines = [f"warning: lineage manifest {d[:12]} is recorded lost; its ancestors are not kept"
             for d in outcome.skipped_lineage]
    young = (f"; {plural(len(plan.young), 'unreachable object')} younger than {duration(plan.grace_s)} kept"
             if plan.young else "")
    if result is None:
        for doomed in plan.objects:
            lines.append(f"would remove object {doomed.digest} ({human_bytes(doomed.size)}, "
                         f"{duration(doomed.age_s)} old)")
        for doomed in plan.temp:
            lines.append(f"would remove temp {_rel(doomed.path, root)} ({human_bytes(doomed.size)}, "
                         f"{duration(doomed.age_s)} old)")
        for record in plan.records:
            why = "unreadable" if record.folder is None else f"of {record.folder}: folder gone"
            lines.append(f"would remove source record {_rel(record.path, root)} ({why})")
        for doomed in plan.quarantine:
            kept = "; its record.json stays" if doomed.keep_record else ""
            lines.append(f"would remove quarantined {_rel(doomed.path, root)} ({human_bytes(doomed.size)}, "
                         f"{duration(doomed.age_s)} old{kept})")
        records = f", {plural(len(plan.records), 'stale source record')}" if plan.records else ""
        records += f", {plural(len(plan.quarantine), 'quarantined item')}" if plan.quarantine else ""
        lines.append(f"dry run: would free {human_bytes(plan.bytes)}: "
                     f"{plural(len(plan.objects), 'unreachable object')}, {plural(len(plan.temp), 'temp file')}"
                     f"{records}{young}; {plural(plan.reachable, 'reachable object')} kept")
        lines += _grace_hint(plan)
        return "\n".join(lines)
    spared = f"; {result.spared} kept because a writer used them meanwhile" if result.spared else ""
    records = f", {plural(result.removed_records, 'stale source record')}" if result.removed_records else ""
    records += (f", {plural(result.removed_quarantine, 'quarantined item')}" if result.removed_quarantine
                else "")
    lines.append(f"removed {plural(result.removed_objects, 'unreachable object')} and "
                 f"{plural(result.removed_temp, 'temp file')}{records}, freed {human_bytes(result.freed_bytes)}"
                 f"{young}{spared}; {plural(plan.reachable, 'reachable object')} kept")
    lines += _grace_hint(plan)
    return "\n".join(lines)


def _grace_hint(plan: GcPlan) -> list[str]:
    """When the grace period kept unreachable objects (a model deleted minutes ago), how to
    free them now."""
    if not plan.young or plan.grace_s <= 0:
        return []
    return [f"{human_bytes(sum(d.size for d in plan.young))} of unreachable objects are younger than the "
            f"grace period ({duration(plan.grace_s)}); `{command(Next('gc', '--grace', '0'))}` frees them now (only while "
            "no import is running)"]


def duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            value = seconds / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{seconds:.0f} s"


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def validation_text(report: ValidationReport) -> str:
    return _validation_text(report)


def plan_text(plan: RepairPlan) -> str:
    return _plan_text(plan)


def outcome_text(result: RepairResult) -> str:
    return _outcome_text(result)
