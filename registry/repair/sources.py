"""The restore sources ``validate-registry --fix`` tries, in order: the local source folder,
then the configured remotes, then the Hub."""

from __future__ import annotations

from registry.remote.restore import remote_sources
from registry.repair.restore import HUB_SOURCE, LOCAL_SOURCE, RestoreSource
from registry.workspace import Workspace


def default_sources(workspace: Workspace) -> list[RestoreSource]:
    return [LOCAL_SOURCE, *remote_sources(workspace), HUB_SOURCE]
