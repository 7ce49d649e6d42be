"""``import-model SOURCE``: the one entry to importing a model, from a local folder
(``registry.ingest.folder``) or from the Hugging Face Hub (``registry.hub.importer``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from registry.ingest.folder import ImportResult, import_folder
from registry.ops import ConflictPolicy
from registry.report import Reporter
from registry.workspace import Workspace
from store.errors import UsageError


def is_local_source(source: str) -> bool:
    """A path (existing, or written as one) rather than a Hub repo id or URL."""
    if source.startswith(("http://", "https://", "hf://")):
        return False
    return os.path.exists(os.path.expanduser(source)) or source.startswith(("/", ".", "~")) or source.count("/") != 1


def import_model(
    workspace: Workspace,
    source: str,
    *,
    name: str | None = None,
    revision: str | None = None,
    token: str | None = None,
    assume_yes: bool = False,
    on_conflict: ConflictPolicy = "cancel",
    reporter: Reporter | None = None,
    confirm_license: Callable[[Any], bool] | None = None,
    ask_token: Callable[[str, str], str | None] | None = None,
    trust_size_only: bool = False,
    follow_links: bool = False,
    load_check: bool = False,
    connections: int | None = None,
) -> ImportResult:
    """Import from a local folder or, for a repo id or Hub URL, from the Hugging Face Hub.

    ``confirm_license`` and ``ask_token`` are the CLI's prompts for Hub imports (see
    ``registry.hub.importer.import_from_hub``); without them the library never asks.
    """
    if is_local_source(source):
        if revision is not None:
            raise UsageError("--revision applies to Hub imports only", f"{source} is a local folder")
        if trust_size_only:
            raise UsageError("--trust-size-only applies to Hub imports only", f"{source} is a local folder")
        if connections is not None:
            raise UsageError("--connections applies to Hub imports only", f"{source} is a local folder")
        return import_folder(workspace, source, name=name, on_conflict=on_conflict, reporter=reporter,
                             follow_links=follow_links, load_check=load_check)
    if follow_links:
        raise UsageError("--follow-links applies to local folders only", f"{source} is a Hub repo")
    from registry.hub.source import parse_hub_source

    parse_hub_source(source, revision)  # a malformed or hostile id is refused before the Hub client loads
    from registry.check.loadcheck import start_worker

    # The load check's worker imports torch and transformers (seconds of CPU) from now on,
    # beside the Hub client loading, the listing and the download.
    start_worker()
    from registry.hub.importer import import_from_hub

    return import_from_hub(workspace, source, name=name, revision=revision, token=token,
                           assume_yes=assume_yes, on_conflict=on_conflict, reporter=reporter,
                           confirm_license=confirm_license, ask_token=ask_token, trust_size_only=trust_size_only,
                           connections=connections)
