"""Disk full for real: a tmpfs too small for the model, no fault injection.

Three cases, each on its own tmpfs (``mount -t tmpfs -o size=...``; needs root, i.e.
CAP_SYS_ADMIN; ``MountUnavailable`` says why not otherwise):

- ``refused``: the filesystem is smaller than the model. import-model's up-front space
  check refuses it before writing anything, naming ENOSPC and the workspace.
- ``mid-write``: the filesystem holds the model's bytes, so the up-front check passes,
  but a filler file leaves less than the store really needs (tmpfs charges whole 4 KiB
  pages: one-tensor blobs and the store's own files cost more than the source's bytes).
  The import runs into a real ENOSPC part-way through writing.
- ``same-fs``: as ``mid-write``, with the source folder on the full filesystem too.
- ``second-name``: the store already holds the model and the filesystem is full to the
  last page; importing it again under a second name writes no blob, only the manifest,
  the view and the registry, and the first of those runs into ENOSPC.

After each failure the store must be sound, the registry unchanged, no temp file left,
the source byte-identical; then space is freed (the filler deleted, or the tmpfs
remounted bigger) and the same import must succeed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.reliability.diskfull import ERROR_LINE, error_lines, temp_debris, registry_bytes
from tests.reliability.invariants import check_store, cli_env, cli_args, registry_entries, tree_digest

PAGE = 4096
# Weights of a few MB: big enough that the store fits only partly, small enough to build
# in a second. Three files (shards) so a failure can land between whole files.
MODEL = {"hidden_size": 128, "vocab_size": 2048, "num_layers": 2, "shards": 3}
# Free space the mid-write cases leave beyond the source's bytes: less than the page
# rounding of the model's ~30 blobs, the manifest and the view's generated files.
SHORT_MARGIN = 8 * PAGE


class MountUnavailable(Exception):
    """This machine does not let the test mount a tmpfs (not root, no mount, EPERM)."""


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path`` for the ``with`` body, always unmounted."""
    if os.geteuid() != 0:
        raise MountUnavailable("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        raise MountUnavailable("no mount/umount command on this machine")
    path.mkdir(parents=True, exist_ok=True)
    result = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if result.returncode != 0:
        raise MountUnavailable(f"mount -t tmpfs failed: {result.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # busy: detach it


def resize(path: Path, size: int) -> None:
    result = _mount("-o", f"remount,size={size}", str(path))
    if result.returncode != 0:
        raise RuntimeError(f"remount of {path} failed: {result.stderr.strip()}")


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(folder: Path, leave: int) -> Path:
    """A filler file in ``folder`` that leaves about ``leave`` bytes free (to a page)."""
    filler = folder / "filler.bin"
    size = free_bytes(folder) - leave
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, size))  # real bytes: a sparse file would take no space on tmpfs
    return filler


def source_bytes(source: Path) -> int:
    return sum(p.stat().st_size for p in source.rglob("*") if p.is_file())


def run_import(root: Path, source: Path, name: str = "m") -> subprocess.CompletedProcess:
    return subprocess.run(cli_args(root, "import-model", str(source), "--name", name, "-y"), env=cli_env(),
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def judge_failure(root: Path, result: subprocess.CompletedProcess, registry_before: bytes | None,
                  sources: list[tuple[Path, dict]]) -> dict:
    """What a failed import left: its error line, and every broken promise."""
    lines = error_lines(result.stderr)
    match = ERROR_LINE.match(lines[0]) if len(lines) == 1 else None
    problems = []
    if result.returncode == 0 or match is None or "Traceback" in result.stderr:
        problems.append(f"unclear error: exit {result.returncode}, stderr: {result.stderr[-1500:]}")
    if registry_bytes(root) != registry_before:
        problems.append("registry changed")
    problems += check_store(root, sources)
    problems += [f"temp left: {p}" for p in temp_debris(root)]
    return {"exit": result.returncode, "error": lines[0] if lines else "",
            "path": match["path"] if match else None, "problems": problems}


def judge_retry(root: Path, source: Path, sources: list[tuple[Path, dict]], name: str) -> list[str]:
    result = run_import(root, source, name)
    if result.returncode != 0:
        return [f"retry failed: exit {result.returncode}: {result.stderr.strip()[-800:]}"]
    problems = check_store(root, sources)
    if name not in registry_entries(root):
        problems.append(f"retry registered {sorted(registry_entries(root))}")
    return problems


def run_small_filesystem(case: str, workdir: Path, model: Path) -> dict:
    """Run one case (``refused``, ``mid-write``, ``same-fs``, ``second-name``) with the tiny
    ``model`` folder and return its figures: ``exit``, ``error`` (the line), ``path`` (the
    path it names), ``problems`` (broken promises after the failure), ``workspace_after``
    (what the failed import left in the workspace folder), ``retry_problems``,
    ``free_before`` (bytes free when the import started), ``needed`` (the source's bytes)."""
    needed = source_bytes(model)
    mount = workdir / "fs"
    size = needed // 2 if case == "refused" else needed * 3
    with tmpfs(mount, size):
        root = mount / "ws"
        root.mkdir()
        source = shutil.copytree(model, mount / "src") if case == "same-fs" else model
        name = "m"
        if case == "second-name":
            first = run_import(root, source)
            if first.returncode != 0:
                raise RuntimeError(f"setup import failed: {first.stderr[-800:]}")
            name = "m2"
        leave = 0 if case == "second-name" else needed + SHORT_MARGIN
        filler = None if case == "refused" else fill(mount, leave)
        sources = [(source, tree_digest(source))]
        registry_before = registry_bytes(root)
        free_before = free_bytes(mount)
        figures = judge_failure(root, run_import(root, source, name), registry_before, sources)
        figures["workspace_after"] = sorted(p.name for p in root.iterdir())
        if case == "refused":
            resize(mount, needed * 4)
        else:
            filler.unlink()
        figures.update(retry_problems=judge_retry(root, source, sources, name), free_before=free_before,
                       needed=needed, mount=str(mount))
        return figures
