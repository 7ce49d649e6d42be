"""The fault seam of the reliability suite: stop or fail the process at a chosen mutating step.

Every mutating operation of ``store.fs.fsops`` counts one step here first. ``MODELSTORE_FAULT``
chooses what happens: ``kill@N`` stops the process with SIGKILL at the N-th step (a crash),
``enospc@N`` makes the N-th step fail as a full disk does (the operation raises the plain
``OSError(ENOSPC)`` from inside its syscall's ``try``, after writing part of its bytes), and
``count`` only logs the steps. ``MODELSTORE_FAULT_LOG`` names a file that receives one line
per step (``N<TAB>op<TAB>path``). Unset, the seam costs one global lookup per operation.

It may import only the standard library.
"""

from __future__ import annotations

import errno
import os
import signal
import threading


class FaultPlan:
    def __init__(self, spec: str, log: str | None):
        kind, _, at = spec.partition("@")
        if kind not in ("kill", "enospc", "count"):
            raise ValueError(f"MODELSTORE_FAULT={spec!r}: expected kill@N, enospc@N or count")
        self.kind = kind
        self.at = int(at) if at else 0
        self.log = log
        self.count = 0
        self.lock = threading.Lock()  # steps may come from worker threads (parallel fsyncs)


def _load_plan() -> FaultPlan | None:
    spec = os.environ.get("MODELSTORE_FAULT")
    return FaultPlan(spec, os.environ.get("MODELSTORE_FAULT_LOG")) if spec else None


plan = _load_plan()


def step(op: str, path: os.PathLike | str) -> bool:
    """Count one mutating step; crash here if the fault plan says so. True: this step must
    fail with ENOSPC (the caller raises ``no_space`` inside its syscall's ``try``, after
    writing part of the data where it writes)."""
    current = plan
    if current is None:
        return False
    with current.lock:
        current.count += 1
        count = current.count
        if current.log:
            with open(current.log, "a", encoding="utf-8") as log:
                log.write(f"{count}\t{op}\t{path}\n")
    if count == current.at:
        if current.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if current.kind == "enospc":
            return True
    return False


def no_space(path: os.PathLike | str) -> OSError:
    """The error the kernel raises on a full disk: a plain OSError, mapped by ``fsops``."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
