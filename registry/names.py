"""Model names: the rules, checked before any filesystem call, and derived defaults.

A name becomes a directory (``models/<name>/``) and a key of registry.json, so it must be
safe as one path component on every common filesystem: ASCII letters, digits, ``.``, ``_``,
``-`` and ``+``, starting with a letter or digit, at most 100 characters, and none of the
store's own file names. ``@`` is reserved for checkpoint references (``NAME@step-200``).
Names that differ only by case are refused too (see ``registry.ops``): they would
collide on case-insensitive filesystems.
"""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 100
_ALLOWED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_FORBIDDEN_CHARS = re.compile(r"[^A-Za-z0-9._+-]")
# The files the store keeps beside the views in models/ (compared case-insensitively).
STORE_FILES = frozenset({"registry.json", "registry.json.prev"})
# Device names Windows reserves, with or without an extension.
_DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)


def name_problem(name: object) -> str | None:
    """The rule ``name`` breaks, or None if it is a valid model name."""
    if not isinstance(name, str) or not name:
        return "a name must not be empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a name must not contain control characters (NUL, newline, tab, ...)"
    if "/" in name or "\\" in name:
        return "a name must not contain '/' or '\\' (it is one folder under models/)"
    if name in (".", "..") or ".." in name:
        return "a name must not contain '..'"
    if name.startswith("."):
        return "a name must not start with '.'"
    if len(name) > MAX_NAME_LENGTH:
        return f"a name must be at most {MAX_NAME_LENGTH} characters (this one has {len(name)})"
    if "@" in name:
        return "'@' is reserved for checkpoint references such as NAME@step-200"
    if not _ALLOWED.fullmatch(name):
        return "use only ASCII letters, digits, '.', '_', '-' and '+', starting with a letter or digit"
    if name.lower() in STORE_FILES:
        return f"{name!r} is the name of one of the store's own files"
    if name.lower().split(".")[0] in _DEVICE_NAMES:
        return f"{name!r} is a reserved device name on Windows"
    return None


def validate_name(name: object) -> str:
    from registry.errors import InvalidNameError

    problem = name_problem(name)
    if problem:
        raise InvalidNameError(str(name), problem)
    return name  # type: ignore[return-value]


def derive_name(text: str) -> str:
    """A valid name from a folder name or a repo id (``Qwen/Qwen2.5-0.5B`` -> ``Qwen2.5-0.5B``)."""
    base = text.rstrip("/\\").replace("\\", "/").split("/")[-1]
    cleaned = _FORBIDDEN_CHARS.sub("-", base).strip(".-_+")
    cleaned = re.sub(r"-{2,}", "-", cleaned)[:MAX_NAME_LENGTH].rstrip(".-_+")
    if not cleaned or name_problem(cleaned):
        cleaned = "model" if not cleaned else f"model-{cleaned}"[:MAX_NAME_LENGTH]
    return cleaned
