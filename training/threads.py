"""How many threads torch uses on the CPU, unless the user said so.

torch's default (one thread per logical CPU) costs more than it gives on the small models
this project trains and tests: on a 2-core VM a 35k-parameter Qwen2 trained 3-8x slower
with 2 threads than with 1 (``OMP_NUM_THREADS=1``), since each op is microseconds of work
and the threads spend it synchronising. So: one thread for a model under
``SMALL_MODEL_PARAMS``, else one per physical core (at most ``MAX_THREADS``).
``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (torch reads them itself) or ``MODELSTORE_THREADS``
win over this.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

SMALL_MODEL_PARAMS = 20_000_000
MAX_THREADS = 8


def physical_cores() -> int:
    """Cores this process may run on, hyperthread siblings counted once."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def default_threads(params: int) -> int:
    return 1 if params < SMALL_MODEL_PARAMS else min(physical_cores(), MAX_THREADS)


def set_cpu_threads(device: torch.device, params: int) -> int | None:
    """Set torch's CPU thread count for a model of ``params`` parameters on ``device``; the
    count set, or None when the environment decides (or the device is not the CPU)."""
    if device.type != "cpu":
        return None
    explicit = os.environ.get("MODELSTORE_THREADS")
    if explicit and explicit.isdigit() and int(explicit) > 0:
        count = int(explicit)
    elif os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return None
    else:
        count = default_threads(params)
    torch.set_num_threads(count)
    return count
