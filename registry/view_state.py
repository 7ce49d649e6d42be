"""What a view on disk is, against what its manifest says it must be: current, in the old
layout (rebuilt by the next writer: ``upgrade_outdated_views``), or written into (a link
replaced by a file, an extra weight file: refused before any load, ``refuse_written_view``).
Building and removing views is ``registry.views``'s.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from registry.registry_file import RegistryEntry
from registry.views import (
    INDEX_FILENAME,
    TENSOR_SUFFIX,
    build_view,
    expected_view,
    has_legacy_layout,
    render_index,
    view_metadata,
)
from store.errors import ModelStoreError, Next, Text
from store.manifest import Manifest

if TYPE_CHECKING:  # the workspace takes its writer lock through ``upgrade_outdated_views``
    from registry.workspace import Workspace

def view_matches(workspace: Workspace, entry: RegistryEntry, manifest: Manifest, *,
                 legacy: bool = False) -> bool:
    """``models/<name>`` is exactly the view of ``manifest`` (in the outdated layout if
    ``legacy``): its links, pointing where the builder points them, its generated files
    byte for byte, and nothing else. Nothing is followed."""
    name = entry.model_name
    view = workspace.view_path(name)
    spec = expected_view(entry, manifest, legacy=legacy)
    dirs = {str(PurePosixPath(p).parent) for p in spec.links} - {"."}
    seen: set[str] = set()
    try:
        for dirpath, dirnames, filenames in os.walk(view):
            where = os.path.relpath(dirpath, view)
            for item in dirnames + filenames:
                relpath = item if where == "." else f"{where}/{item}"
                path = os.path.join(dirpath, item)
                seen.add(relpath)
                if relpath in spec.links:
                    if not os.path.islink(path) or os.readlink(path) != spec.link_target(workspace, name, relpath):
                        return False
                elif relpath in spec.generated and where == ".":
                    if os.path.islink(path) or not os.path.isfile(path):
                        return False
                    with open(path, "rb") as f:
                        if f.read() != spec.generated[relpath]:
                            return False
                elif relpath not in dirs or os.path.islink(path):
                    return False
    except OSError:
        return False
    return seen == set(spec.links) | set(spec.generated) | dirs


def upgrade_outdated_views(workspace: Workspace) -> list[str]:
    """Rebuild, in today's layout, every registered view that is exactly its manifest's view
    in the outdated one; return their names. Called by every writer once it holds the lock.

    Cheap when there is nothing to do (one ``lstat`` per registered model). A view in the
    old layout that is not exactly what the builder wrote (damaged, or something added) is
    left alone: ``validate-registry`` reports it and ``--fix`` quarantines what does not
    belong before it rebuilds. A failure leaves the view as it was (the rebuild swaps a
    complete folder into place), for ``validate-registry --fix``: the writer goes on.
    """
    try:
        models = workspace.read_registry().models
    except (ModelStoreError, OSError):
        return []  # validate-registry's business; the writer reports it if it needs the registry
    upgraded = []
    for name, entry in sorted(models.items()):
        try:
            if not has_legacy_layout(workspace, name):
                continue
            manifest = workspace.manifest(entry.manifest)
            if view_matches(workspace, entry, manifest, legacy=True):
                build_view(workspace, entry, manifest)
                upgraded.append(name)
        except (ModelStoreError, OSError):
            continue
    return upgraded


# Files a weight loader picks up at the top of a model folder (transformers prefers a
# ``model.safetensors`` over the index; ``pytorch_model.bin`` and its kin are pickles).
WEIGHT_FILE_SUFFIXES = (TENSOR_SUFFIX, ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".gguf")


class ViewWrittenError(ModelStoreError, ValueError):
    """A view something was written into (a link replaced by a file, an extra weight file):
    what a load would read there is not what the store holds, so nothing is loaded."""

    def __init__(self, name: str, path: str, detail: str):
        super().__init__(
            f"the view of model {name!r} was written into: {path} {detail}; nothing was loaded",
            Text("run `", Next("validate-registry", "--fix"), "` to rebuild the view (what was written "
                 "there is kept in .modelstore/quarantine/view-files/)"),
        )
        self.name = name
        self.path = path
        self.detail = detail


def written_into(workspace: Workspace, entry: RegistryEntry, manifest: Manifest) -> tuple[str, str] | None:
    """(path, what) of the first sign that something wrote into ``models/<name>``, or None.

    Signs: a link of the view that is a file or folder now; a weight file at the top that
    the view does not hold (``model.safetensors`` from a ``save_pretrained``); a rewritten
    index. A missing link, or one to another object, is not one: validate-registry reports
    those, and a view that a crash left showing an uncommitted version (which the next commit
    or ``--fix`` settles) has them. A view in the outdated layout is
    checked against that layout: it was not written into, only not upgraded yet.
    """
    name = entry.model_name
    view = workspace.view_path(name)
    rel = f"models/{name}"
    spec = expected_view(entry, manifest, legacy=has_legacy_layout(workspace, name))
    for relpath in sorted(spec.links):
        path = view / relpath
        try:
            target = os.readlink(path)
        except FileNotFoundError:
            continue
        except OSError:  # not a link
            what = "folder" if os.path.isdir(path) else "file"
            return f"{rel}/{relpath}", f"is a {what}, no longer a link to object {spec.links[relpath][:12]}"
        del target  # a link to another object is not a write (a view placed but not committed has them)
    try:
        top = sorted(os.listdir(view))
    except OSError:
        return None
    for item in top:
        if item not in spec.links and item not in spec.generated and item.lower().endswith(WEIGHT_FILE_SUFFIXES):
            return f"{rel}/{item}", "is a weight file the view does not hold (loaders would read it)"
    try:
        index = (view / INDEX_FILENAME).read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        index = b""
    if index != spec.generated[INDEX_FILENAME] and not _index_of_shown_version(workspace, name, index):
        return f"{rel}/{INDEX_FILENAME}", "was rewritten: it is not the index of the model's tensors"
    return None


def _index_of_shown_version(workspace: Workspace, name: str, index: bytes) -> bool:
    """``index`` is the index of the version the view's metadata.json names: a view a write
    placed but did not commit yet (a crash; ``view-uncommitted``), not one written into."""
    shown = view_metadata(workspace, name)
    if shown is None:
        return False
    try:
        manifest = workspace.manifest(shown[1])
    except (ModelStoreError, OSError):
        return False
    return index in (render_index(manifest), render_index(manifest, legacy=True))


def refuse_written_view(workspace: Workspace, entry: RegistryEntry, manifest: Manifest) -> None:
    """Raise ``ViewWrittenError`` if something was written into the view of ``entry``."""
    found = written_into(workspace, entry, manifest)
    if found is not None:
        raise ViewWrittenError(entry.model_name, *found)
