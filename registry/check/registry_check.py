"""Checking ``models/registry.json`` the way a careful reader would, one finding per problem.

``registry_file.parse_registry`` refuses a bad file with one error; validation needs more:
each problem named with its own code (empty, truncated, invalid JSON, duplicate key, newer
schema, unknown or missing field, wrong type, bad name), and the entries that *are* sound
kept, so their manifests, objects and views are still checked. The checks run in layers
(bytes, JSON, top level, each entry) and the strict parser is run last: if it refuses a
file these checks passed, that is reported too, so validation never calls clean a registry
the rest of modelstore would refuse.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import msgspec

from registry.check.findings import Finding, finding
from registry.names import name_problem
from registry.registry_file import (
    SCHEMA_VERSION, RegistryDoc, RegistryEntry, empty_registry, parse_registry, previous_path,
)
from registry.views import METADATA_FILENAME
from registry.workspace import MODELS_DIRNAME, Workspace
from store.codec import DuplicateKeyError, check_no_duplicate_keys
from store.digest import is_digest
from registry.errors import RegistryError

REGISTRY_REL = f"{MODELS_DIRNAME}/registry.json"
_DOC_FIELDS = {f.name for f in msgspec.structs.fields(RegistryDoc)}
_ENTRY_FIELDS = {f.name: f.required for f in msgspec.structs.fields(RegistryEntry)}


@dataclass
class RegistryCheck:
    findings: list[Finding] = field(default_factory=list)
    # The sound entries (everything, for a clean file); None when the file must not be
    # interpreted at all (a newer schema).
    doc: RegistryDoc | None = None
    data: bytes | None = None  # the bytes that were checked; None when there is no file

    @property
    def damaged(self) -> bool:
        return any(f.severity == "error" for f in self.findings)

    @property
    def newer(self) -> bool:
        return any(f.code == "registry-newer-schema" for f in self.findings)


def lost_registry(workspace: Workspace) -> bool:
    """registry.json is absent, but its previous generation or a view says it existed."""
    if workspace.registry_path.exists() or not workspace.models_dir.is_dir():
        return False
    if previous_path(workspace.registry_path).exists():
        return True
    return any(entry.is_dir(follow_symlinks=False)
               and os.path.exists(os.path.join(entry.path, METADATA_FILENAME))
               for entry in os.scandir(workspace.models_dir) if not entry.name.startswith("."))


def check_registry(workspace: Workspace) -> RegistryCheck:
    path = workspace.registry_path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if lost_registry(workspace):
            return RegistryCheck([finding(
                "registry-missing", f"{REGISTRY_REL} is missing, but models/ still holds views "
                "or the registry's previous generation", path=REGISTRY_REL)], empty_registry())
        return RegistryCheck([], empty_registry())
    except OSError as e:
        return RegistryCheck([finding("registry-unreadable", f"{REGISTRY_REL} cannot be read: "
                                      f"{e.strerror or e}", path=REGISTRY_REL)], empty_registry())
    check = RegistryCheck(data=data)
    raw = _parse_json(data, check.findings)
    if raw is None:
        check.doc = empty_registry()
        return check
    check.doc = _check_structure(raw, check.findings)
    if not check.damaged and check.doc is not None:
        try:
            parse_registry(path, data)
        except RegistryError as e:
            check.findings.append(finding("registry-invalid", f"{REGISTRY_REL}: {e.reason}",
                                          path=REGISTRY_REL))
    return check


def _parse_json(data: bytes, findings: list[Finding]) -> Any:
    if not data.strip():
        findings.append(finding("registry-empty", f"{REGISTRY_REL} is empty ({len(data)} bytes)",
                                path=REGISTRY_REL))
        return None
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as e:
        # The parser stops at the end of a cut-off file, or at a string the cut left open.
        if e.pos >= len(data.rstrip()) or e.msg.startswith("Unterminated string"):
            findings.append(finding("registry-truncated", f"{REGISTRY_REL} ends in the middle of its JSON "
                                    f"after {len(data)} bytes ({e.msg})", path=REGISTRY_REL))
        else:
            findings.append(finding("registry-invalid-json", f"{REGISTRY_REL} is not valid JSON: {e.msg} "
                                    f"at line {e.lineno} column {e.colno}", path=REGISTRY_REL))
        return None
    except ValueError as e:  # not UTF-8
        findings.append(finding("registry-invalid-json", f"{REGISTRY_REL} is not valid JSON: {e}",
                                path=REGISTRY_REL))
        return None
    try:
        check_no_duplicate_keys(data)
    except DuplicateKeyError as e:
        models = [e.key] if isinstance(raw, dict) and e.key in (raw.get("models") or {}) else []
        what = f"model {e.key!r} is registered twice" if models else f"key {e.key!r} appears twice"
        findings.append(finding("registry-duplicate-key", f"{REGISTRY_REL}: {what} (JSON keeps only "
                                "the last; modelstore refuses to guess)", models=models, path=REGISTRY_REL))
    return raw


def _check_structure(raw: Any, findings: list[Finding]) -> RegistryDoc | None:
    def add(code: str, message: str, models: list[str] | None = None) -> None:
        findings.append(finding(code, f"{REGISTRY_REL}: {message}", models=models or [], path=REGISTRY_REL))

    if not isinstance(raw, dict):
        add("registry-invalid", f"the top level is a JSON {type(raw).__name__}, not an object")
        return empty_registry()
    version = raw.get("schema_version")
    if "schema_version" not in raw:
        add("registry-missing-field", "schema_version is missing")
    elif not isinstance(version, int) or isinstance(version, bool):
        add("registry-invalid", f"schema_version is {version!r}, not an integer")
    elif version > SCHEMA_VERSION:
        add("registry-newer-schema", f"schema version {version} is newer than this modelstore reads "
            f"({SCHEMA_VERSION}); upgrade modelstore to use this store")
        return None
    elif version != SCHEMA_VERSION:
        add("registry-invalid", f"unknown schema version {version}")
    for key in sorted(set(raw) - _DOC_FIELDS):
        add("registry-unknown-field", f"unknown top-level field {key!r}")
    models = raw.get("models", {})
    if not isinstance(models, dict):
        add("registry-invalid", f"models is a JSON {type(models).__name__}, not an object")
        return empty_registry()
    sound: dict[str, RegistryEntry] = {}
    for name, entry in models.items():
        checked = _check_entry(name, entry, add)
        if checked is not None:
            sound[name] = checked
    return RegistryDoc(schema_version=SCHEMA_VERSION, models=sound)


def _check_entry(name: str, entry: Any, add) -> RegistryEntry | None:
    """The entry if it is sound enough to check its model; problems go through ``add``."""
    problem = name_problem(name)
    if problem:
        add("registry-invalid-name", f"model name {name!r} is invalid: {problem}", [name])
        return None
    if not isinstance(entry, dict):
        add("registry-invalid-entry", f"entry {name!r} is a JSON {type(entry).__name__}, not an object",
            [name])
        return None
    known = {k: v for k, v in entry.items() if k in _ENTRY_FIELDS}
    for key in sorted(set(entry) - set(known)):
        add("registry-unknown-field", f"entry {name!r} has unknown field {key!r}", [name])
    missing = [k for k, required in _ENTRY_FIELDS.items() if required and k not in entry]
    for key in missing:
        add("registry-missing-field", f"entry {name!r} lacks required field {key!r}", [name])
    if missing:
        return None
    try:
        decoded = msgspec.convert(known, RegistryEntry)
    except msgspec.ValidationError as e:
        add("registry-invalid-entry", f"entry {name!r}: {e}", [name])
        return None
    if decoded.model_name != name:
        add("registry-entry-name", f"entry {name!r} names itself {decoded.model_name!r}", [name])
        return None
    if not is_digest(decoded.manifest):
        add("registry-invalid-entry", f"entry {name!r} has an invalid manifest digest {decoded.manifest!r}",
            [name])
        return None
    expected_path = f"{MODELS_DIRNAME}/{name}"
    if decoded.local_path != expected_path:
        add("registry-invalid-entry", f"entry {name!r} has local_path {decoded.local_path!r}, "
            f"not {expected_path!r}", [name])
    return decoded
