"""What validation finds: one record per problem, with a stable code, and the report.

Every finding names the models it concerns, the digest and the path involved (relative to
the workspace root), and says in its message what is wrong. ``code`` is stable: scripts
match on it, and ``--fix`` decides what to do from it. Errors break the store's promise
(a reference to something missing or wrong); notes (``info``) are things worth knowing
that break nothing: orphan directories, unreferenced objects, temp debris, quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import msgspec

from registry.report import human_bytes
from store.errors import Hint, Text

Severity = Literal["error", "info"]

# code -> (severity, what it means). The list is the documentation of every finding.
CODES: dict[str, tuple[Severity, str]] = {
    # models/registry.json
    "registry-missing": ("error", "registry.json is gone but views or its previous generation remain"),
    "registry-unreadable": ("error", "registry.json cannot be read (I/O error, permissions)"),
    "registry-empty": ("error", "registry.json is empty"),
    "registry-truncated": ("error", "registry.json ends in the middle of its JSON"),
    "registry-invalid-json": ("error", "registry.json is not valid JSON"),
    "registry-duplicate-key": ("error", "a JSON object in registry.json repeats a key"),
    "registry-newer-schema": ("error", "registry.json was written by a newer modelstore"),
    "registry-unknown-field": ("error", "registry.json has a field this schema does not define"),
    "registry-missing-field": ("error", "registry.json lacks a required field"),
    "registry-invalid": ("error", "registry.json does not have the registry's structure"),
    "registry-invalid-entry": ("error", "an entry has a field of the wrong type or value"),
    "registry-entry-name": ("error", "an entry's model_name differs from its key"),
    "registry-invalid-name": ("error", "an entry's name breaks the naming rules"),
    # manifests
    "manifest-missing": ("error", "a registered model's manifest object is missing"),
    "manifest-corrupt": ("error", "a registered model's manifest does not hash to its name"),
    "manifest-invalid": ("error", "a registered model's manifest hashes right but does not decode"),
    "lineage-missing": ("error", "a manifest in a model's lineage is missing"),
    "lineage-corrupt": ("error", "a manifest in a model's lineage does not hash to its name"),
    "lineage-invalid": ("error", "a manifest in a model's lineage does not decode"),
    "lineage-lost": ("info", "a lineage manifest --fix could not restore and recorded as lost"),
    # objects (files, tensors, optimizer state)
    "object-missing": ("error", "an object a manifest references is missing"),
    "object-size": ("error", "an object has the wrong size (truncated or extended)"),
    "object-corrupt": ("error", "an object's bytes do not hash to its name, or it is not a file"),
    "object-writable": ("info", "an object's mode lets it be written (the store seals them 0444)"),
    # views
    "view-missing": ("error", "a registered model has no view"),
    "view-not-directory": ("error", "models/<name> is not a directory"),
    "view-link-missing": ("error", "a link of the view is missing"),
    "view-link-dangling": ("error", "a link points somewhere that does not exist"),
    "view-link-retargeted": ("error", "a link points to something other than its object"),
    "view-link-replaced": ("error", "a link of the view was replaced by a file or folder"),
    "view-file-missing": ("error", "a generated file of the view is missing"),
    "view-file-modified": ("error", "a generated file of the view differs from its manifest"),
    "view-extra-file": ("error", "the view holds something its manifest does not list"),
    "view-outdated": ("info", "the view is in an earlier layout (tensor links under weights/): the next "
                      "writer or --fix rebuilds it"),
    "view-uncommitted": ("info", "the view shows a version a write placed but did not commit (a crash)"),
    # notes
    "orphan-directory": ("info", "something under models/ that no registry entry names"),
    "object-unreferenced": ("info", "objects no registered model reaches (gc removes them)"),
    "object-stray": ("info", "entries under objects/ not named like an object"),
    "store-link": ("info", "a folder of the store (or its lock file) is a symbolic link: writers refuse it"),
    "temp-debris": ("info", "temp files left by interrupted writes (gc removes them)"),
    "quarantine": ("info", "items set aside by an earlier --fix, kept until you delete them"),
}


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    severity: Severity
    message: Hint  # a Text where it names a next action as a value
    models: tuple[str, ...] = ()
    digest: str | None = None
    path: str | None = None  # relative to the workspace root

    def line(self) -> Text:
        return Text(f"{self.severity}: {self.code}: ", self.message)


def finding(code: str, message: Hint, *, models: tuple[str, ...] | list[str] = (),
            digest: str | None = None, path: str | None = None) -> Finding:
    severity, _ = CODES[code]
    return Finding(code=code, severity=severity, message=message, models=tuple(sorted(models)),
                   digest=digest, path=path)


@dataclass
class ValidationReport:
    findings: list[Finding] = field(default_factory=list)
    models: int = 0
    objects: int = 0  # distinct objects checked: manifests, files, tensors
    bytes: int = 0  # their total size
    deep: bool = True

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "info"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def summary(self, how: str | None = None) -> str:
        how = how or ("verified" if self.deep else "size-checked (--fast: not re-hashed)")
        text = (f"{_count(self.models, 'model')}, {_count(self.objects, 'object')}, "
                f"{human_bytes(self.bytes)} {how}, ")
        text += "no problems found" if self.ok else _count(len(self.errors), "error")
        if self.notes:
            text += f" ({_count(len(self.notes), 'note')})"
        return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
