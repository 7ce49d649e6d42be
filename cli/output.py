"""The one JSON renderer: every ``--json`` document is built and encoded here."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from cli.errors import say
from store.errors import Text


def to_json(obj: Any) -> str:
    """Indented JSON of ``obj``: msgspec Structs, dataclasses, dicts and lists alike; a next
    action inside a message (``Text``) is spelled as the command to type."""
    return json.dumps(builtins(obj), indent=2, ensure_ascii=False)


def builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj, enc_hook=_encode)


def _encode(obj: Any) -> Any:
    if isinstance(obj, Text):
        return say(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__} as JSON")


def lineage_doc(nodes: list, children: list[str]) -> dict:
    return {"lineage": nodes, "children": children}


def usage_doc(usage) -> dict:
    return {**builtins(usage), "dedup_ratio": usage.dedup_ratio}


def model_info_doc(info) -> dict:
    """``model-info --json``: the registry entry's fields, then what the manifest and the
    store know about the version."""
    entry, manifest = info.entry, info.manifest
    return {
        **{k: getattr(entry, k) for k in entry.__struct_fields__},
        "license": manifest.license,
        "model_size": manifest.params,
        "file_size": info.file_size,
        "exclusive_bytes": info.exclusive_bytes,
        "shared_bytes": info.shared_bytes,
        "dtypes": info.dtypes,
        "tensors": len(manifest.tensors),
        "files": sorted(manifest.files),
        "parents": manifest.parents,
        "origin": info.origin,
        "lineage": [node.__dict__ for node in info.lineage],
        "children": info.children,
        "checkpoints": [{**c.__dict__, "available": c.available} for c in info.checkpoints],
        "parent_missing": info.parent_missing,
    }


def validation_doc(report) -> dict:
    """``validate-registry --json``: every finding, then the summary."""
    return {
        "findings": builtins(report.findings),
        "summary": {
            "models": report.models, "objects": report.objects, "bytes": report.bytes,
            "deep": report.deep, "errors": len(report.errors), "notes": len(report.notes),
            "ok": report.ok, "text": report.summary(),
        },
    }


def repair_doc(result) -> dict:
    plan = result.plan
    doc = validation_doc(result.before)
    doc["plan"] = {"steps": plan.steps, "cannot": plan.cannot, "destructive": plan.destructive}
    doc["outcome"] = result.outcome
    doc["after"] = None if result.after is None else validation_doc(result.after)
    doc["ok"] = result.ok
    return doc
