"""The configured remotes as restore sources for ``validate-registry --fix``.

Tried after the local source folder and before the Hub: a remote object is addressed by the
same digest, so any remote that holds it can restore it, whatever the manifest's origin.
Each object is verified as it downloads (``RemoteStore.download``).
"""

from __future__ import annotations

from registry.remote.config import Remote, all_remotes
from registry.repair.restore import RestoreSource
from registry.report import Reporter
from registry.workspace import Workspace
from store.errors import ModelStoreError
from store.manifest import Manifest


def remote_source(remote: Remote) -> RestoreSource:
    where = f"remote {remote.name} ({remote.config.url})"

    def describe(manifest: Manifest) -> str | None:
        return where

    def restore(workspace: Workspace, manifest: Manifest, digests: set[str], reporter: Reporter) -> set[str]:
        sizes = manifest.expected_sizes()
        done: set[str] = set()
        try:
            if not remote.store.check_format():
                return done
        except ModelStoreError as e:
            reporter.warning(f"cannot restore from {where}: {e}")
            return done
        for digest in sorted(digests):
            size = sizes.get(digest)
            if size is None:
                continue
            try:
                if remote.store.holds(digest, size):
                    remote.store.download(workspace.objects, digest, size)
                    done.add(digest)
            except ModelStoreError as e:
                reporter.warning(f"cannot restore object {digest[:12]} from {where}: {e}")
        return done

    return RestoreSource(f"remote:{remote.name}", describe, restore)


def remote_sources(workspace: Workspace) -> list[RestoreSource]:
    try:
        return [remote_source(r) for r in all_remotes(workspace)]
    except ModelStoreError:
        return []
