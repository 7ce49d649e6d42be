"""Disk full for real: a tmpfs too small for the model, no fault injection.

Each case on its own tmpfs (``mount -t tmpfs -o size=...``). As root it is mounted
directly; otherwise the case runs in a new user and mount namespace (``unshare -Urm``, no
root needed where the kernel allows unprivileged user namespaces), where the test is root
of its own mounts and the tmpfs vanishes with the namespace. ``MountUnavailable`` says why
neither works; only then is a case skipped.

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

- ``gc``: two models, one deleted; every inode of the tmpfs taken (``nr_inodes``), so gc's
  first new entry (its private folder) fails with the kernel's ENOSPC; with the fillers
  removed, the same gc succeeds.
- ``fix``: a blob of the model corrupted, the tmpfs full to the last page: ``validate-registry
  --fix`` restoring the blob from the source runs into ENOSPC mid-write; with space freed,
  the same --fix repairs the store.

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

from registry.ingest.folder import free_bytes
from tests.reliability.diskfull import NO_SPACE, ERROR_LINE, error_lines, temp_debris, registry_bytes
from tests.reliability.invariants import (bad_objects, check_store, cli_env, cli_args, registry_entries,
                                          tree_digest)

PAGE = 4096
# Weights of a few MB: big enough that the store fits only partly, small enough to build
# in a second. Three files (shards) so a failure can land between whole files.
MODEL = {"hidden_size": 128, "vocab_size": 2048, "num_layers": 2, "shards": 3}
# Free space the mid-write cases leave beyond the source's bytes: less than the page
# rounding of the model's ~30 blobs, the manifest and the view's generated files.
SHORT_MARGIN = 8 * PAGE


class MountUnavailable(Exception):
    """This machine does not let the test mount a tmpfs (not root, no mount, EPERM)."""


CASES = ("refused", "mid-write", "same-fs", "second-name", "gc", "fix")
INODES = 400  # the gc case's tmpfs: enough for the store, few enough to fill at once


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


def mount_method() -> str:
    """``"root"`` (mount here) or ``"userns"`` (mount inside ``unshare -Urm``); raises
    ``MountUnavailable`` with both reasons when neither can mount a tmpfs."""
    import tempfile

    if shutil.which("mount") is None or shutil.which("umount") is None:
        raise MountUnavailable("no mount/umount command on this machine")
    with tempfile.TemporaryDirectory(prefix="tmpfs-probe-") as probe:
        # RELIABILITY_TMPFS=userns: the namespace even as root (how the path is tested here)
        if os.geteuid() == 0 and os.environ.get("RELIABILITY_TMPFS") != "userns":
            done = _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", probe)
            if done.returncode == 0:
                subprocess.run(["umount", probe], capture_output=True)
                return "root"
            why_root = f"mount as root failed: {done.stderr.strip()}"
        else:
            why_root = "not root"
        if shutil.which("unshare") is None:
            raise MountUnavailable(f"{why_root}, and no unshare command for a user namespace")
        done = subprocess.run(["unshare", "-Urm", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe],
                              capture_output=True, text=True)
        if done.returncode == 0:
            return "userns"
        raise MountUnavailable(f"{why_root}; unshare -Urm mount failed: {done.stderr.strip()}")


def run_case(case: str, workdir: Path, model: Path) -> dict:
    """``run_small_filesystem`` where this machine can mount (as root, or in a user
    namespace: then in a child process, its figures coming back as JSON), with
    ``error_ok``: whether the failure was the one line the case expects."""
    import json
    import sys

    from tests.reliability.invariants import ROOT

    if mount_method() == "root":
        figures = run_small_filesystem(case, workdir, model)
    else:
        done = subprocess.run(["unshare", "-Urm", sys.executable, "-m", "tests.reliability.diskfull_fs", case,
                               str(workdir), str(model)], capture_output=True, text=True, cwd=ROOT,
                              env=cli_env(), timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"the case failed to run in a user namespace: {done.stderr[-2000:]}")
        figures = json.loads(done.stdout.splitlines()[-1])
    expected = (f"error: ENOSPC: {figures['needed'] / 1e6:.1f} MB needed but " if case == "refused"
                else f"error: ENOSPC: {NO_SPACE} at {figures['mount']}/ws/")
    figures["error_ok"] = figures["exit"] == 1 and figures["error"].startswith(expected)
    return figures


@contextmanager
def tmpfs(path: Path, size: int, inodes: int | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path`` for the ``with`` body, always unmounted."""
    if os.geteuid() != 0:
        raise MountUnavailable("mounting a tmpfs needs root (CAP_SYS_ADMIN), or a user namespace: "
                               "run the case through run_case")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        raise MountUnavailable("no mount/umount command on this machine")
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755" + (f",nr_inodes={inodes}" if inodes else "")
    result = _mount("-t", "tmpfs", "-o", options, "tmpfs", str(path))
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
    return run(root, "import-model", str(source), "--name", name, "-y")


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli_args(root, *args), env=cli_env(), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def fill_inodes(folder: Path) -> Path:
    """Empty files in ``folder/inodes`` until the filesystem has no inode left (ENOSPC)."""
    import errno

    fillers = folder / "inodes"
    fillers.mkdir()
    n = 0
    while True:
        try:
            (fillers / str(n)).touch()
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            return fillers
        n += 1


def run_maintenance(case: str, workdir: Path, model: Path) -> dict:
    """The ``gc`` and ``fix`` cases: a real ENOSPC in gc (no inode left) and in --fix (no page
    left while it restores a corrupted blob from the source), then the retry with space freed."""
    needed = source_bytes(model)
    mount = workdir / "fs"
    with tmpfs(mount, needed * 4, inodes=INODES if case == "gc" else None):
        root = mount / "ws"
        root.mkdir()
        for name, src in (("m", model), ("d", None)):
            if src is None:  # a second model, deleted: its blobs are gc's garbage
                src = shutil.copytree(model, mount / "other")
                for weights in sorted(src.glob("*.safetensors")):
                    data = bytearray(weights.read_bytes())
                    data[-1] ^= 0xFF  # other bytes in the last tensor: a blob of its own
                    weights.write_bytes(bytes(data))
            done = run_import(root, src, name)
            if done.returncode != 0:
                raise RuntimeError(f"setup import failed: {done.stderr[-800:]}")
            if case == "fix":
                break
        if case == "gc":
            if run(root, "delete-model", "d", "-y", "--delete-files").returncode != 0:
                raise RuntimeError("setup delete failed")
            shutil.rmtree(mount / "other")
            args = ["gc", "--grace", "0"]
        else:
            blob = max((root / ".modelstore" / "objects").glob("*/*"), key=lambda p: p.stat().st_size)
            blob.chmod(0o644)
            data = bytearray(blob.read_bytes())
            data[len(data) // 2] ^= 0xFF
            blob.write_bytes(bytes(data))
            blob.chmod(0o444)
            args = ["validate-registry", "--fix", "-y"]
        sources = [(model, tree_digest(model))]
        registry_before = registry_bytes(root)
        filler = fill_inodes(mount) if case == "gc" else fill(mount, 0)
        free_before = free_bytes(mount)
        result = run(root, *args)
        lines = error_lines(result.stderr)
        match = ERROR_LINE.match(lines[0]) if len(lines) == 1 else None
        problems = []
        if result.returncode == 0 or match is None or "Traceback" in result.stderr:
            problems.append(f"unclear error: exit {result.returncode}, stderr: {result.stderr[-1500:]}")
        if registry_bytes(root) != registry_before:
            problems.append("registry changed")
        if case == "gc":
            problems += check_store(root, sources)
        else:  # the damage --fix was repairing may remain; nothing else may appear
            problems += [f"object does not hash to its name: {o}" for o in bad_objects(root)
                         if o != f"{blob.parent.name}/{blob.name}"]
            problems += [f"source changed: {s}" for s, before in sources if tree_digest(s) != before]
        problems += [f"temp left: {p}" for p in temp_debris(root)]
        figures = {"exit": result.returncode, "error": lines[0] if lines else "",
                   "path": match["path"] if match else None, "problems": problems,
                   "free_before": free_before, "needed": needed, "mount": str(mount)}
        shutil.rmtree(filler) if filler.is_dir() else filler.unlink()
        retry = run(root, *args)
        figures["retry_problems"] = ([f"retry failed: exit {retry.returncode}: {retry.stderr.strip()[-800:]}"]
                                     if retry.returncode != 0 else check_store(root, sources))
        if case == "gc" and "d" in registry_entries(root):
            figures["retry_problems"].append("d registered again")
        return figures


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
    ``free_before`` (bytes free when the import started), ``needed`` (the source's bytes).
    ``gc`` and ``fix``: see ``run_maintenance``."""
    if case in ("gc", "fix"):
        return run_maintenance(case, workdir, model)
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


if __name__ == "__main__":  # run_case's child, inside ``unshare -Urm``: root of its own mounts
    import json
    import sys

    case, workdir, model = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    print(json.dumps(run_small_filesystem(case, workdir, model)))
