"""A workspace: the store (``.modelstore/``) and the named models (``models/``) under one root.

Every library entry point takes a ``Workspace``. Opening one never creates anything: a
read-only command on an empty folder sees an empty registry, and the store is created by
the first command that writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from registry.names import validate_name
from registry.registry_file import RegistryDoc, RegistryEntry, read_registry, write_registry
from store.fs import fsops
from registry.errors import ModelNotFoundError, ViewMissingError
from store.layout import Layout
from store.fs.lock import writer_lock
from store.manifest import Manifest, load_manifest
from store.objects import ObjectStore

MODELS_DIRNAME = "models"
REGISTRY_FILENAME = "registry.json"
ROOT_ENV = "MODELSTORE_ROOT"


class Workspace:
    def __init__(self, root: Path | str):
        self.root = Path(root).absolute()
        self.layout = Layout(self.root)
        self.objects = ObjectStore(self.layout)
        self.models_dir = self.root / MODELS_DIRNAME
        self.registry_path = self.models_dir / REGISTRY_FILENAME

    @classmethod
    def open(cls, root: Path | str | None = None) -> Workspace:
        """The workspace at ``root``, else ``$MODELSTORE_ROOT``, else the current directory.

        An existing store's FORMAT is checked now, so an unknown format is refused before
        anything is read or written.
        """
        chosen = root if root is not None else os.environ.get(ROOT_ENV) or os.getcwd()
        workspace = cls(chosen)
        if workspace.layout.exists():
            workspace.layout.check_format()
        return workspace

    def ensure_store(self) -> None:
        """Create ``.modelstore/`` and ``models/`` if they do not exist yet."""
        self.layout.create()
        fsops.mkdirs(self.models_dir)  # refuses a models/ that is a link

    # --- registry ------------------------------------------------------------------------

    def read_registry(self) -> RegistryDoc:
        return read_registry(self.registry_path)

    def write_registry(self, doc: RegistryDoc) -> None:
        write_registry(doc, self.registry_path, self.layout.tmp)

    @contextmanager
    def locked(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the writer lock. A writer is also what brings views in an outdated layout up
        to date (derived data, rebuilt in place: registry.view_state.upgrade_outdated_views)."""
        from registry.view_state import upgrade_outdated_views

        with writer_lock(self.layout, on_wait):
            upgrade_outdated_views(self)
            yield

    # --- views and manifests -------------------------------------------------------------

    def view_path(self, name: str) -> Path:
        return self.models_dir / validate_name(name)

    def view_relpath(self, name: str) -> str:
        return f"{MODELS_DIRNAME}/{validate_name(name)}"

    def manifest(self, digest: str) -> Manifest:
        return load_manifest(self.objects, digest)

    def require_view(self, name: str) -> Path:
        path = self.view_path(name)
        if not path.is_dir():
            raise ViewMissingError(name, path)
        return path


def get_entry(workspace: Workspace, name: str) -> RegistryEntry:
    """The registry entry of ``name``; an unknown name is refused with the closest names."""
    models = workspace.read_registry().models
    entry = models.get(name)
    if entry is None:
        import difflib

        raise ModelNotFoundError(name, difflib.get_close_matches(name, list(models), n=2))
    return entry
