"""A Hub model's license: what it is, where it was found, and its acknowledgment.

The model card's metadata (``license``, with ``license_name`` / ``license_link`` for
``other``) comes first; else a top-level LICENSE file is read; else the repo declares none,
which is said plainly and must be acknowledged all the same (its terms are unknown).
Nothing here prompts: the CLI passes ``confirm``, and ``--yes`` acknowledges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from registry.errors import Aborted, LicenseNotAcknowledgedError

LICENSE_FILE_PREFIXES = ("LICENSE", "LICENCE", "COPYING")
MAX_LABEL = 80


@dataclass(frozen=True)
class LicenseInfo:
    repo_id: str
    label: str | None  # what the manifest and metadata record; None when none is declared
    source: str  # "model card", "LICENSE file" (its name) or "none"
    link: str | None = None  # the license's page, or the LICENSE file at the pinned commit
    text: str | None = None  # the LICENSE file's text, when that is where it came from

    def describe(self) -> str:
        if self.label is None:
            return "none declared (the model's terms of use are unknown)"
        return f"{self.label}, from the {self.source}"


def license_from_card(repo_id: str, card: dict, link_base: str) -> LicenseInfo | None:
    value = card.get("license")
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v)
    if not isinstance(value, str) or not value.strip():
        return None
    label = value.strip()
    name = card.get("license_name")
    if isinstance(name, str) and name.strip() and name.strip() != label:
        label = f"{name.strip()} ({label})"
    link = card.get("license_link")
    if isinstance(link, str) and link.startswith("LICENSE"):
        link = f"{link_base}/{link}"  # card links are often relative to the repo
    return LicenseInfo(repo_id, label[:MAX_LABEL], "model card", link if isinstance(link, str) else None)


def license_file(paths: list[str]) -> str | None:
    """The repo's top-level license file, if it has one (LICENSE, LICENSE.md, ...)."""
    found = [p for p in paths if "/" not in p and p.upper().startswith(LICENSE_FILE_PREFIXES)]
    return min(found, key=len) if found else None


def license_from_file(repo_id: str, path: str, text: str, link: str) -> LicenseInfo:
    """The license named by the first line of its text (``Apache License``, ``MIT License``...)."""
    title = next((line.strip(" #*=\t") for line in text.splitlines() if line.strip(" #*=\t")), "")
    label = title[:MAX_LABEL] if title else f"see {path}"
    return LicenseInfo(repo_id, label, f"{path} file", link, text)


def acknowledge(info: LicenseInfo, *, assume_yes: bool, confirm: Callable[[LicenseInfo], bool] | None) -> str:
    """Record the user's acknowledgment; returns how it was given. Refuses without one."""
    if assume_yes:
        return "acknowledged with --yes"
    if confirm is None:
        raise LicenseNotAcknowledgedError(info.repo_id, info.label)
    if not confirm(info):
        raise Aborted(f"the license of {info.repo_id} was not acknowledged; nothing was imported")
    return "acknowledged"
