"""Views: ``models/<name>/``, a folder every Hugging Face-format reader loads as is.

A view holds, for every file and tensor of the model's manifest, a relative symlink into
``.modelstore/objects/`` (files under their own names, each tensor as
``tensor-<tensor name>.safetensors``), plus two generated files:
``model.safetensors.index.json``, which maps every tensor to its one-tensor file as a
sharded checkpoint does, and ``metadata.json``, the model's summary with ``_comment``
fields. Relative links keep the workspace relocatable. A view is built in a temporary
folder and swapped into place, so a reader never sees half of one.

Why the tensor links sit at the top of the folder, and why they are named so:

* vLLM, SGLang and torch DCP's ``HuggingFaceStorageReader`` glob ``*.safetensors`` at the
  top of the folder and only then keep the files the index's ``weight_map`` names (vLLM's
  ``filter_duplicate_safetensors_files``); links in a subfolder are never found ("Cannot
  find any model weights"). At the top, the glob finds exactly the tensor links, and every
  one of them is named in the index: the filter keeps them all.
* ``tensor-`` keeps them apart from every other file of the model. No model file can be a
  top-level ``*.safetensors`` (weights are split into tensors on import, never stored as
  files; ``file_path_problem`` refuses such a path), so config, tokenizer and processor
  files cannot collide with a tensor link; and no tensor's link can be ``model.safetensors``
  (or any name a Hugging Face save writes: ``model-00001-of-00002.safetensors``,
  ``adapter_model.safetensors``), since all of them start with ``tensor-``. A real
  ``model.safetensors`` in a view is therefore always something written into it, which
  transformers would prefer over the index: loads by name refuse such a view
  (``refuse_written_view``).
* It stays a valid file name for every tensor name ``tensor_name_problem`` accepts: no
  ``/``, ``\\``, control character or leading ``.`` (a hidden file that a glob skips), and
  at most ``MAX_COMPONENT`` bytes with the suffix, so at most 247 with the prefix (255 is
  the limit of ext4, XFS, btrfs and APFS).

Views are derived data. A view in the layout before this one (tensor links under
``weights/``, ``LEGACY_WEIGHTS_DIR``) still loads with transformers but not with vLLM:
``validate-registry`` notes it as ``view-outdated``, and the first writer that takes the
store's lock rebuilds it (``upgrade_outdated_views``), as ``--fix`` does.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from typing import TYPE_CHECKING

from registry import debris
from registry.registry_file import RegistryEntry
from store.fs import fsops
from store.digest import is_digest
from store.errors import ModelStoreError, StoreIOError
from store.manifest import Manifest

if TYPE_CHECKING:  # the workspace takes its writer lock through ``upgrade_outdated_views``
    from registry.workspace import Workspace

TENSOR_PREFIX = "tensor-"
TENSOR_SUFFIX = ".safetensors"
LEGACY_WEIGHTS_DIR = "weights"  # where views kept their tensor links before (outdated)
INDEX_FILENAME = "model.safetensors.index.json"
METADATA_FILENAME = "metadata.json"
GENERATED_FILES = (INDEX_FILENAME, METADATA_FILENAME)
MAX_COMPONENT = 240


def tensor_name_problem(name: str) -> str | None:
    """Why a tensor name cannot be a file name in a view, or None."""
    if not name or name.startswith("."):
        return "it is empty or starts with '.'"
    if any(c in name for c in "/\\") or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it contains '/', '\\' or control characters"
    if len(name.encode()) + len(".safetensors") > MAX_COMPONENT:
        return "it is too long to be a file name"
    return None


def file_path_problem(relpath: str) -> str | None:
    """Why a model file's relative path cannot live in a view, or None."""
    path = PurePosixPath(relpath)
    if not relpath or "\\" in relpath or path.is_absolute() or relpath != str(path):
        return "it is not a plain relative path"
    if any(part in ("", ".", "..") or part.startswith(".") for part in path.parts):
        return "it has an empty, '.', '..' or hidden component"
    if any(ord(c) < 32 or ord(c) == 127 for c in relpath) or len(relpath) > 1000:
        return "it contains control characters or is too long"
    if (path.parts[0] == LEGACY_WEIGHTS_DIR or relpath in GENERATED_FILES
            or (len(path.parts) == 1 and relpath.lower().endswith(TENSOR_SUFFIX))):
        return "the view generates that path itself"
    return None


def tensor_relpath(name: str, *, legacy: bool = False) -> str:
    """The path of tensor ``name``'s link in a view (``legacy``: in the outdated layout)."""
    if legacy:
        return f"{LEGACY_WEIGHTS_DIR}/{name}{TENSOR_SUFFIX}"
    return f"{TENSOR_PREFIX}{name}{TENSOR_SUFFIX}"


@dataclass(frozen=True)
class ViewSpec:
    """Exactly what a view must contain: symlinks (path -> object digest) and generated files."""

    links: dict[str, str]
    generated: dict[str, bytes]

    def link_target(self, workspace: Workspace, name: str, relpath: str) -> str:
        """The relative symlink target for ``relpath`` in the view of ``name``:
        ``../`` up to the workspace root (one per folder level), then the object's path."""
        up = "../" * (posixpath.normpath(relpath).count("/") + 2)  # models/<name>/<relpath> -> root
        return up + workspace.layout.object_relpath(self.links[relpath])


def expected_view(entry: RegistryEntry, manifest: Manifest, *, legacy: bool = False) -> ViewSpec:
    """The view of ``entry`` (``legacy``: as the outdated layout built it, to recognise one)."""
    links = {path: f.digest for path, f in manifest.files.items()}
    links.update((tensor_relpath(name, legacy=legacy), t.digest) for name, t in manifest.tensors.items())
    generated = {
        INDEX_FILENAME: render_index(manifest, legacy=legacy),
        METADATA_FILENAME: render_metadata(entry, manifest),
    }
    return ViewSpec(links=links, generated=generated)


def render_index(manifest: Manifest, *, legacy: bool = False) -> bytes:
    index = {
        "metadata": {"total_size": manifest.tensor_bytes, "format": "pt"},
        "weight_map": {name: tensor_relpath(name, legacy=legacy) for name in sorted(manifest.tensors)},
    }
    return json.dumps(index, indent=2).encode() + b"\n"


def model_file_size(manifest: Manifest) -> int:
    """Bytes of every file and tensor blob of this version (before sharing with others)."""
    return manifest.file_bytes + sum(t.blob_size(n) for n, t in manifest.tensors.items())


def view_metadata(workspace: Workspace, name: str) -> tuple[dict, str] | None:
    """``models/<name>/metadata.json`` and the manifest digest it names, or None unless it
    is a JSON object naming this model and a well-formed digest."""
    try:
        meta = json.loads((workspace.view_path(name) / METADATA_FILENAME).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("model_name") != name:
        return None
    digest = meta.get("manifest")
    if not isinstance(digest, str) or not is_digest(digest):
        return None
    return meta, digest


def render_metadata(entry: RegistryEntry, manifest: Manifest) -> bytes:
    fields = [
        ("model_name", entry.model_name, "the name this view is registered under"),
        ("model_id", entry.model_id, "where the model came from: a Hub repo id, a folder name or a run"),
        ("source", entry.source, "huggingface, local, custom (trained from scratch) or finetuned"),
        ("architecture_type", entry.architecture_type, "the config's model_type; it selects the adapter"),
        ("created_at", entry.created_at, "when this name was registered (UTC, ISO 8601)"),
        ("license", manifest.license, "the license the model was published under, if known"),
        ("model_size", manifest.params, "number of parameters (elements of all weight tensors)"),
        ("file_size", model_file_size(manifest), "bytes of all files and tensor blobs of this version"),
        ("fine_tuned_from", entry.fine_tuned_from, "the registered model this one was trained from"),
        ("manifest", entry.manifest, "digest of the manifest: the identity of this model version"),
    ]
    doc: dict[str, object] = {
        "_comment": "Generated by modelstore from the model's manifest; edits are overwritten. "
        "Every other file here is a read-only symlink into .modelstore/objects.",
    }
    for key, value, comment in fields:
        doc[f"_comment_{key}"] = comment
        doc[key] = value
    return json.dumps(doc, indent=2, ensure_ascii=False).encode() + b"\n"


def build_view(workspace: Workspace, entry: RegistryEntry, manifest: Manifest, *,
               replace: bool = True) -> bool:
    """Write the view of ``entry`` in a temp folder, then swap it into ``models/<name>``.

    With ``replace=False`` it only takes the place if nothing is there (one atomic rename:
    of two writers, exactly one wins) and returns False, changing nothing, if something is.
    """
    with view_in_place(workspace, entry, manifest, replace=replace) as placed:
        return placed


@contextmanager
def view_in_place(workspace: Workspace, entry: RegistryEntry, manifest: Manifest, *,
                  replace: bool = True) -> Iterator[bool]:
    """Build the view of ``entry`` and swap it into ``models/<name>`` for the ``with`` body;
    yields whether it was placed (see ``build_view`` for ``replace``).

    If the body fails (the registry write that should commit the view, on a full disk),
    the view is taken back: the previous one is put back in place, or a view that had no
    predecessor is removed, so a failed registration leaves ``models/`` as it was and the
    same command can simply be run again. An error the body raises after its own commit
    point (``committed``) takes nothing back. Once the body succeeds, the old view goes.
    """
    name = entry.model_name
    spec = expected_view(entry, manifest)
    final = workspace.view_path(name)
    fsops.mkdirs(workspace.models_dir)
    staging = fsops.make_temp_dir(workspace.models_dir, debris.staging_prefix(name))
    try:
        folders: set[Path] = set()
        for relpath in sorted(spec.links):
            link = staging / relpath
            if link.parent not in folders:
                fsops.mkdirs(link.parent)
                folders.add(link.parent)
            fsops.symlink(spec.link_target(workspace, name, relpath), link)
        for relpath, data in spec.generated.items():  # the staging folder is ours: no temp names
            fsops.write_scratch(staging / relpath, data)
        fsops.fsync_paths([*(staging / relpath for relpath in spec.generated), staging])
        placed, old = _swap_into_place(staging, final, replace)
    except BaseException:
        fsops.rmtree(staging)
        raise
    if not placed:
        fsops.rmtree(staging)
        yield False
        return
    try:
        yield True
    except BaseException as error:
        if not getattr(error, "committed", False):
            _take_back(final, old)
        elif old is not None:  # committed (the registry names the new view): the old one goes
            with suppress(OSError):
                fsops.rmtree(old)
        raise
    try:  # the view is in place (and, for register, committed): only cleanup is left
        if old is not None:
            fsops.rmtree(old)
        fsops.fsync_dir(workspace.models_dir)
    except StoreIOError as e:
        raise e.after_commit() from e


def _swap_into_place(staging: Path, final: Path, replace: bool) -> tuple[bool, Path | None]:
    """Put ``staging`` at ``final``: (placed, where the view it replaced now is, or None)."""
    while True:
        if not os.path.lexists(final):
            try:
                fsops.rename(staging, final)
                return True, None
            except OSError as e:  # another writer's view took the place since the check
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        if not replace:
            return False, None
        try:
            if os.path.isdir(final) and not os.path.islink(final) and fsops.exchange(staging, final):
                return True, staging  # staging now holds the old view
            old = debris.replaced(final)
            fsops.rename(final, old)
        except FileNotFoundError:
            continue  # the old view went since the check (a delete without the lock): place ours
        try:
            fsops.rename(staging, final)
        except BaseException:
            fsops.rename(old, final)  # never leave the name without its view
            raise
        return True, old


def _take_back(final: Path, old: Path | None) -> None:
    """Undo ``_swap_into_place``. Its own failure must not hide the error that caused it:
    what it leaves is an unregistered view or debris, which validate-registry reports."""
    with suppress(OSError):
        if old is None:
            fsops.rmtree(final)
        elif not fsops.exchange(old, final):
            aside = debris.set_aside(final)
            fsops.rename(final, aside)
            fsops.rename(old, final)
            old = aside
        if old is not None:
            fsops.rmtree(old)
        fsops.fsync_dir(final.parent)


def view_is_disposable(workspace: Workspace, name: str) -> bool:
    """True unless ``models/<name>`` holds something the store cannot rebuild: it is absent,
    or a folder of nothing but links into the store's objects and the generated files.

    Such a folder with no registry entry naming it is what a registration interrupted
    between its view and its registry entry leaves, or a view that another writer is
    committing, or deleting, right now (without the lock, or just before it takes it);
    replacing it loses nothing. A folder holding anything else is the user's.
    """
    view = workspace.view_path(name)
    if not os.path.lexists(view):
        return True
    if os.path.islink(view) or not os.path.isdir(view):
        return False
    objects = str(workspace.layout.objects) + os.sep
    # What goes while it is read is skipped: a view being deleted, or swapped, right now.
    for dirpath, dirnames, filenames in os.walk(view):
        for entry in dirnames + filenames:
            path = os.path.join(dirpath, entry)
            if os.path.islink(path):
                try:
                    target = os.path.normpath(os.path.join(dirpath, os.readlink(path)))
                except FileNotFoundError:
                    continue
                if not target.startswith(objects):
                    return False
            elif os.path.isdir(path) or not os.path.lexists(path):
                continue
            elif not (dirpath == str(view) and entry in GENERATED_FILES):
                return False
    return True


def remove_view(workspace: Workspace, name: str) -> bool:
    """Delete ``models/<name>`` (links only; blobs stay until gc). False if there was none
    (or it was given back, below).

    The caller has removed the registry entry. The view is first moved aside, then the
    registry is read again: a writer running without the lock may have registered the name
    meanwhile (a concurrent import of it, or a registry write that lost this delete), and
    then the view just moved is the one that entry needs, so it goes back.
    """
    path = workspace.view_path(name)
    if not os.path.lexists(path):
        return False
    # One rename out of the way, then the removal: nothing new is allocated, so a full disk
    # cannot stop it half-way, and a crash leaves debris (".deleted-") that gc sweeps.
    doomed = debris.doomed(workspace.models_dir, name)
    fsops.rename(path, doomed)
    try:
        wanted = name in workspace.read_registry().models
    except ModelStoreError:
        wanted = False  # validate-registry's business; this delete has committed
    if wanted and not os.path.lexists(path):
        fsops.rename(doomed, path)
    fsops.rmtree(doomed)
    fsops.fsync_dir(workspace.models_dir)
    return not wanted


# --- outdated views, and views something was written into ----------------------------------


def has_legacy_layout(workspace: Workspace, name: str) -> bool:
    """``models/<name>`` keeps its tensor links under ``weights/`` (the outdated layout)."""
    try:
        st = os.lstat(workspace.view_path(name) / LEGACY_WEIGHTS_DIR)
    except (OSError, ValueError):
        return False
    return stat.S_ISDIR(st.st_mode)
