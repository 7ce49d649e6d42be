"""``validate-registry --fix`` from end to end: plan (``registry.repair.plan``), show the
plan, execute it (``registry.repair.steps``), validate again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from registry.check.findings import ValidationReport
from registry.check.validate import validate
from registry.repair.plan import RepairOutcome, RepairPlan, plan_repair
from registry.repair.restore import RestoreSource
from registry.repair.sources import default_sources
from registry.repair.steps import execute_repair
from registry.report import NullReporter, Reporter
from registry.workspace import Workspace
from registry.errors import Aborted


@dataclass
class RepairResult:
    before: ValidationReport
    plan: RepairPlan
    outcome: RepairOutcome | None = None  # None: nothing was executed (dry run, empty plan)
    after: ValidationReport | None = None  # the fast re-validation after executing

    @property
    def ok(self) -> bool:
        final = self.after if self.after is not None else self.before
        return final.ok


def repair(workspace: Workspace, *, deep: bool = True, dry_run: bool = False,
           on_plan: Callable[[ValidationReport, RepairPlan], bool] | None = None,
           sources: list[RestoreSource] | None = None, reporter: Reporter | None = None) -> RepairResult:
    """Plan, show (``on_plan`` sees the findings and the plan), then execute unless ``dry_run``.

    ``on_plan`` returning False for a plan with steps raises ``Aborted``: nothing changes.
    After executing, the workspace is validated again (fast: every object written was
    verified as it was written) and that report decides success.
    """
    reporter = reporter or NullReporter()
    sources = default_sources(workspace) if sources is None else sources
    before, plan = plan_repair(workspace, deep=deep, reporter=reporter, sources=sources)
    go_ahead = on_plan(before, plan) if on_plan is not None else True
    if dry_run or plan.empty:
        return RepairResult(before, plan)
    if not go_ahead:
        raise Aborted("the repair was cancelled; nothing was changed")
    outcome = execute_repair(workspace, plan, sources=sources, reporter=reporter)
    return RepairResult(before, plan, outcome, validate(workspace, deep=False))
