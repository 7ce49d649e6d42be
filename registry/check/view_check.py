"""Checking a view, ``models/<name>/``, against exactly what its manifest says it must hold.

The view is scanned without following any link (a replaced folder is seen as replaced,
not entered) and compared with ``views.expected_view``: every link present, a symlink, and
pointing at its object by the same relative path the view builder writes; the generated
files byte-identical; nothing else. A link with the right target whose object is missing
is not reported here: the object check reports it, with every model it affects.

A write places a model's view before it commits the registry entry (DESIGN's order), so a
crash between the two leaves a complete view of a version the registry does not name:
``view_version`` recognises such a view (exactly the view of the manifest its own
``metadata.json`` names, a manifest present in the store). Registered under another
version, it is reported as one note, ``view-uncommitted``, not as a damaged view; not
registered at all, it is a ``leftover_view`` a writer may replace, since it holds nothing
but links into the store and files generated from its manifest.

A view in the earlier layout (tensor links under ``weights/``) is derived data that is only
out of date: compared with that layout, it is one note, ``view-outdated``, which the next
writer or ``--fix`` settles by rebuilding it; what is damaged in it is reported as in any
view, against the layout it has.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

import msgspec

from registry.check.findings import Finding, finding
from registry.registry_file import RegistryEntry
from registry.views import expected_view, has_legacy_layout, view_metadata
from registry.workspace import Workspace
from store.errors import ModelStoreError
from store.manifest import Manifest


def scan_view(view: Path) -> dict[str, str]:
    """relative path -> kind ("link", "file", "dir", "other") of everything under ``view``."""
    found: dict[str, str] = {}

    def walk(folder: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            rel = f"{prefix}{entry.name}"
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                found[rel] = "link"
            elif stat.S_ISDIR(mode):
                found[rel] = "dir"
                walk(Path(entry.path), rel + "/")
            else:
                found[rel] = "file" if stat.S_ISREG(mode) else "other"

    walk(view, "")
    return found


def expected_dirs(paths: list[str]) -> set[str]:
    dirs = set()
    for path in paths:
        parent = PurePosixPath(path).parent
        while str(parent) != ".":
            dirs.add(str(parent))
            parent = parent.parent
    return dirs


def check_view(workspace: Workspace, entry: RegistryEntry, manifest: Manifest | None) -> list[Finding]:
    legacy = manifest is not None and has_legacy_layout(workspace, entry.model_name)
    found = _compare_view(workspace, entry, manifest, legacy=legacy)
    if legacy:
        rel = f"models/{entry.model_name}"
        return found + [finding("view-outdated", f"{rel} keeps its tensor links under {rel}/weights/, the "
                                "layout before tensor links moved to the top of the folder (vLLM and SGLang "
                                "find no weights there); the next writer or `--fix` rebuilds it",
                                models=[entry.model_name], path=rel)]
    if not found or manifest is None:
        return found
    shown = view_version(workspace, entry.model_name)
    if shown is None or shown[0] == entry.manifest:
        return found
    name, rel = entry.model_name, f"models/{entry.model_name}"
    return [finding("view-uncommitted", f"{rel} shows version {shown[0][:12]}, which a write placed but "
                    f"never committed (interrupted), not the registered {entry.manifest[:12]}; `--fix` or "
                    "re-running that write settles it", models=[name], digest=shown[0], path=rel)]


def view_version(workspace: Workspace, name: str) -> tuple[str, Manifest] | None:
    """The version ``models/<name>`` is exactly the view of, by its own metadata.json, or None.

    None unless metadata.json names this model and a readable manifest in the store whose
    objects are all present, and the view matches that manifest exactly (only its links and
    generated files, nothing else): a view that loads.
    """
    found = view_metadata(workspace, name)
    if found is None:
        return None
    meta, digest = found
    try:
        manifest = workspace.manifest(digest)
        fields = {key: meta.get(key) for key in ("model_id", "architecture_type", "source", "created_at",
                                                  "fine_tuned_from")}
        entry = msgspec.convert({**fields, "model_name": name, "manifest": digest,
                                 "local_path": workspace.view_relpath(name)}, RegistryEntry)
    except (ModelStoreError, OSError, msgspec.ValidationError):
        return None
    if any(workspace.objects.size(d) != size for d, size in manifest.expected_sizes().items()):
        return None
    legacy = has_legacy_layout(workspace, name)
    return (digest, manifest) if not _compare_view(workspace, entry, manifest, legacy=legacy) else None


def leftover_view(workspace: Workspace, name: str) -> bool:
    """``models/<name>`` is not registered but is exactly a view modelstore built: left by a
    write interrupted before its registry commit, or by a delete after it. Replacing it
    loses nothing (links into the store, files generated from a manifest)."""
    return name not in workspace.read_registry().models and view_version(workspace, name) is not None


def _compare_view(workspace: Workspace, entry: RegistryEntry, manifest: Manifest | None, *,
                  legacy: bool = False) -> list[Finding]:
    name = entry.model_name
    view = workspace.view_path(name)
    rel = f"models/{name}"
    try:
        st = os.lstat(view)
    except FileNotFoundError:
        return [finding("view-missing", f"model {name!r} has no view: {rel}/ does not exist",
                        models=[name], path=rel)]
    if not stat.S_ISDIR(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "a file"
        return [finding("view-not-directory", f"{rel} is {kind}, not the view of model {name!r}",
                        models=[name], path=rel)]
    if manifest is None:
        return []  # without a manifest there is nothing to compare with (reported already)

    spec = expected_view(entry, manifest, legacy=legacy)
    actual = scan_view(view)
    dirs = expected_dirs([*spec.links, *spec.generated])
    found: list[Finding] = []

    def add(code: str, relpath: str, message: str, digest: str | None = None) -> None:
        found.append(finding(code, f"{rel}/{relpath} {message}", models=[name], digest=digest,
                             path=f"{rel}/{relpath}"))

    for relpath in sorted(dirs):
        if relpath in actual and actual[relpath] != "dir":
            add("view-link-replaced", relpath, f"is a {actual[relpath]}, not the view's folder")
    for relpath, digest in sorted(spec.links.items()):
        kind = actual.get(relpath)
        short = digest[:12]
        if kind is None:
            add("view-link-missing", relpath, f"is missing (a link to object {short})", digest)
        elif kind != "link":
            add("view-link-replaced", relpath, f"is a {kind}, not a link to object {short}", digest)
        else:
            target = os.readlink(view / relpath)
            wanted = spec.link_target(workspace, name, relpath)
            if target != wanted:
                resolves = os.path.exists(view / relpath)
                code = "view-link-retargeted" if resolves else "view-link-dangling"
                where = "to" if resolves else "to nothing at"
                add(code, relpath, f"points {where} {target!r} instead of object {short} ({wanted!r})",
                    digest)
    for relpath, data in sorted(spec.generated.items()):
        kind = actual.get(relpath)
        if kind is None:
            add("view-file-missing", relpath, "is missing (generated from the manifest)")
        elif kind != "file" or (view / relpath).read_bytes() != data:
            what = f"is a {kind}" if kind != "file" else "was modified"
            add("view-file-modified", relpath, f"{what}: it differs from what the manifest generates")
    expected = set(spec.links) | set(spec.generated) | dirs
    extra_dirs = [p + "/" for p, kind in actual.items() if kind == "dir" and p not in expected]
    for relpath, kind in sorted(actual.items()):
        inside_extra = any(relpath.startswith(d) for d in extra_dirs)
        if relpath not in expected and not inside_extra:
            add("view-extra-file", relpath, f"({'folder' if kind == 'dir' else kind}) is not part of "
                f"the manifest of model {name!r}")
    return found

