"""Plain-text renderings of library results, for the CLI to print.

Pure functions from results to strings: no I/O, no click, so they are tested directly.
"""

from __future__ import annotations

from typing import Any

from typing import TYPE_CHECKING

from cli.errors import say
from registry.report import human_bytes, plural
from store.manifest import HubOrigin

if TYPE_CHECKING:  # types only: a command imports what it runs, and only that (re-import: no du, no info)
    from registry.checkpoints import Checkpoint
    from registry.info import ModelInfo
    from registry.ingest.folder import ImportResult
    from registry.lineage import LineageNode
    from registry.registry_file import RegistryEntry
    from registry.space.du import StoreUsage

def models_table(entries: list[RegistryEntry], now: float | None = None) -> str:
    """Name, id (only where it differs from the name; the column only when one does),
    architecture, source, size of its files, and when it was registered ("2 h ago")."""
    noun = "model" if len(entries) == 1 else "models"
    if not entries:
        return f"0 {noun}"
    with_id = any(e.model_id != e.model_name for e in entries)
    headings = ("MODEL_NAME", *(("MODEL_ID",) if with_id else ()), "ARCHITECTURE", "SOURCE", "SIZE", "CREATED")
    rows = [headings]
    for e in entries:
        size = e.metadata.get("file_size")
        model_id = (("" if e.model_id == e.model_name else e.model_id),) if with_id else ()
        rows.append((e.model_name, *model_id, e.architecture_type, e.source,
                     human_bytes(size) if isinstance(size, int) else "?", ago(e.created_at, now)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(headings))]
    size_col = headings.index("SIZE")
    lines = ["  ".join(cell.rjust(w) if i == size_col else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    return "\n".join(lines) + f"\n{len(entries)} {noun}"


def ago(iso: str, now: float | None = None) -> str:
    """``2026-12-07T06:17:00Z`` as ``just now``, ``5 min ago``, ``2 h ago``, ``3 d ago``, or the
    date when older than 30 days (or the text itself when it is not such a time)."""
    import calendar
    import time

    try:
        then = calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return str(iso)
    seconds = (time.time() if now is None else now) - then
    if seconds < 60:
        return "just now"
    for unit, size, limit in (("min", 60, 3600), ("h", 3600, 86400), ("d", 86400, 30 * 86400)):
        if seconds < limit:
            return f"{int(seconds // size)} {unit} ago"
    return iso[:10]


def short(digest: str) -> str:
    return digest[:12]


def lineage_groups(nodes: list[LineageNode]) -> list[tuple[LineageNode, list[LineageNode]]]:
    """Oldest first: each version shown, with the unregistered checkpoints of its own training
    run that led to it folded in (a run of 10 checkpoints is one line, not ten)."""
    oldest_first = list(reversed(nodes))
    groups, pending = [], []
    for i, node in enumerate(oldest_first):
        after = oldest_first[i + 1] if i + 1 < len(oldest_first) else None
        if (after is not None and not node.registered and not node.problem and node.step is not None
                and after.step is not None and after.model_id == node.model_id):
            pending.append(node)
            continue
        groups.append((node, pending))
        pending = []
    return groups


def is_missing(node: LineageNode) -> bool:
    """A version shown on its own line that no name points at (its manifest is still read)."""
    return not node.registered and not node.problem


def lineage_lines(nodes: list[LineageNode]) -> list[str]:
    """Oldest ancestor first, down to the model itself: base -> fine-tune -> ... -> current."""
    lines = []
    for depth, (node, checkpoints) in enumerate(lineage_groups(nodes)):
        if node.names:
            label = ", ".join(node.names)
        elif node.step is not None and node.model_id:
            label = f"{node.model_id}@step-{node.step} (not in the registry)"
        else:
            label = f"{node.model_id} (not in the registry)" if node.model_id else "(not in the registry)"
        if node.problem:
            detail = f"manifest unreadable: {say(node.problem)}"
        else:
            step = f" step {node.step}" if node.step is not None else ""
            detail = f"{node.source}{step}, {node.created_at}"
        if checkpoints:
            detail += "; checkpoints at step " + ", ".join(str(c.step) for c in checkpoints)
        arrow = "   " * (depth - 1) + "-> " if depth else ""
        lines.append(f"{arrow}{label} [{short(node.manifest)}] {detail}")
    return lines


def checkpoint_lines(name: str, checkpoints: list[Checkpoint], registered: str) -> list[str]:
    """One line per checkpoint of the run that produced ``name``, oldest first."""
    lines = []
    for c in checkpoints:
        metrics = "".join(f", {key.replace('_', ' ')} {c.metrics[key]:.4f}" for key in ("loss", "eval_loss")
                          if key in c.metrics)
        if c.digest == registered:
            state = "this version"
        elif c.available:
            state = "loadable" + (", resumable" if c.resumable else "")
        else:
            state = f"weights collected by gc ({c.missing} blobs gone); manifest kept"
        lines.append(f"{name}@step-{c.step} [{short(c.digest)}] {c.created_at}{metrics}: {state}")
    return lines


def model_info_text(info: ModelInfo) -> str:
    entry, manifest = info.entry, info.manifest
    rows = [
        ("model_name", entry.model_name),
        ("model_id", entry.model_id),
        ("architecture_type", entry.architecture_type),
        ("source", entry.source),
        ("created_at", entry.created_at),
        ("license", manifest.license or "unknown"),
        ("model_size", f"{manifest.params:,} parameters"),
        ("file_size", f"{human_bytes(info.file_size)} ({info.file_size:,} bytes)"),
        ("on disk", f"{human_bytes(info.exclusive_bytes)} held by this model alone (its manifest "
                    f"included, as du counts), {human_bytes(info.shared_bytes)} shared with other models"),
        ("fine_tuned_from", (entry.fine_tuned_from or "-") + (" (not in the registry any more)"
                                                               if info.parent_missing else "")),
        ("local_path", entry.local_path),
        ("manifest", entry.manifest),
        ("tensors", f"{len(manifest.tensors)} ({', '.join(info.dtypes)})"),
        ("files", ", ".join(sorted(manifest.files)) or "-"),
    ]
    if info.origin:
        rows.append(("origin", info.origin))
    for key, value in sorted(entry.metadata.items()):
        if key not in {"license", "model_size", "file_size", "dtype"} and value is not None:
            rows.append((key, str(value)))
    width = max(len(k) for k, _ in rows)
    text = [f"{k.ljust(width)}  {v}" for k, v in rows]
    text.append("lineage:")
    text.extend("  " + line for line in lineage_lines(info.lineage))
    if info.checkpoints:
        text.append(f"checkpoints ({len(info.checkpoints)}, training run {info.checkpoints[-1].run}):")
        lines = checkpoint_lines(entry.model_name, info.checkpoints, entry.manifest)
        text.extend("  " + line for line in lines)
    if info.children:
        text.append("fine-tuned into: " + ", ".join(info.children))
    return "\n".join(text)


def import_summary(result: ImportResult) -> str:
    stats, manifest = result.stats, result.manifest
    if result.unchanged:
        return f"{result.entry.model_name} is up to date [{short(result.manifest_digest)}]: nothing changed"
    lines = [
        f"imported {result.entry.model_name} [{short(result.manifest_digest)}]: "
        f"{len(manifest.tensors)} tensors, {manifest.params:,} parameters, "
        f"{human_bytes(manifest.tensor_bytes)}; {stats.new_objects} new blobs "
        f"({human_bytes(stats.new_bytes)} written), {stats.reused_objects} already stored"
    ]
    origin = manifest.origin
    if isinstance(origin, HubOrigin):
        lines.append(f"from {origin.repo_id} at commit {origin.commit} (revision {origin.revision}), "
                     f"license: {manifest.license or 'none declared'}")
    lines.append(f'use it in a config as: model_name = "{result.entry.model_name}"')
    return "\n".join(lines)


def license_prompt(info: Any, max_lines: int = 20) -> str:
    """What the CLI shows before asking to acknowledge a Hub model's license."""
    lines = [f"License of {info.repo_id}: {info.describe()}"]
    if info.link:
        lines.append(f"  {info.link}")
    if info.text:
        text = info.text.strip().splitlines()
        lines.extend("  | " + line for line in text[:max_lines])
        if len(text) > max_lines:
            more = len(text) - max_lines
            lines.append(f"  | ... ({more} more lines; the whole file is kept with the model)")
    return "\n".join(lines)


def usage_text(usage: StoreUsage) -> str:
    rows = [("MODEL_NAME", "LOGICAL", "ALONE", "SHARED")]
    for m in usage.models:
        rows.append((m.name + (" (manifest unreadable)" if m.problem else ""), human_bytes(m.logical_bytes),
                     human_bytes(m.exclusive_bytes), human_bytes(m.shared_bytes)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.append(
        f"store: {plural(len(usage.models), 'model')}, {human_bytes(usage.logical_bytes)} logical in "
        f"{human_bytes(usage.referenced_bytes)} of blobs (dedup ratio {usage.dedup_ratio:.2f}x); "
        f"{human_bytes(usage.stored_bytes)} on disk in {plural(usage.objects, 'object')}, of which "
        f"{human_bytes(usage.unreferenced_bytes)} in {usage.unreferenced_objects} unreferenced "
        f"(freed by gc once older than its grace period)"
    )
    if usage.quarantine_items:
        lines.append(f"quarantine: {human_bytes(usage.quarantine_bytes)} in "
                     f"{plural(usage.quarantine_items, 'item')} set aside by validate-registry --fix "
                     "(gc removes them once older than its grace period)")
    lines.append(f"TOTAL {human_bytes(usage.stored_bytes + usage.quarantine_bytes)} on disk "
                 f"(objects{' and quarantine' if usage.quarantine_items else ''})")
    return "\n".join(lines)


def lineage_text(name: str, nodes: list[LineageNode], children: list[str]) -> str:
    text = [f"lineage of {name} (oldest first):"]
    text.extend("  " + line for line in lineage_lines(nodes))
    missing = [node for node, _ in lineage_groups(nodes)[:-1] if is_missing(node)]
    if missing:
        text.append(f"{len(missing)} ancestor(s) are not in the registry any more; "
                    "their manifests stay readable")
    text.append("fine-tuned from it: " + (", ".join(children) if children else "none"))
    return "\n".join(text)
