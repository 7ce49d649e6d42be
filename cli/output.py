"""The one JSON renderer: every ``--json`` document is built and encoded here."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from cli.errors import spell


def to_json(obj: Any) -> str:
    """Indented JSON of ``obj``: msgspec Structs, dataclasses, dicts and lists alike."""
    return spell(json.dumps(msgspec.to_builtins(obj), indent=2, ensure_ascii=False))


def lineage_doc(nodes: list, children: list[str]) -> dict:
    return {"lineage": nodes, "children": children}


def usage_doc(usage) -> dict:
    return {**msgspec.to_builtins(usage), "dedup_ratio": usage.dedup_ratio}


def repair_doc(result) -> dict:
    plan = result.plan
    doc = result.before.to_builtins()
    doc["plan"] = {"steps": plan.steps, "cannot": plan.cannot, "destructive": plan.destructive}
    doc["outcome"] = result.outcome
    doc["after"] = None if result.after is None else result.after.to_builtins()
    doc["ok"] = result.ok
    return doc
