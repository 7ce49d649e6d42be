"""How the Hub transfers are tuned (``TransferSettings``: flags and environment variables)
and shown (``SharedProgress``: one bar for a whole import). Used by the transfer engine
(``registry.hub.transfer``) and by the importer that configures it; imports nothing of the
project but the Hub errors.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from registry.hub.errors import HubConfigError

ENV_CONNECTIONS = "MODELSTORE_HUB_CONNECTIONS"
ENV_RANGE_MB = "MODELSTORE_HUB_RANGE_MB"
ENV_RETRIES = "MODELSTORE_HUB_RETRIES"
ENV_BACKOFF = "MODELSTORE_HUB_BACKOFF_S"
DEFAULT_CONNECTIONS = 8
DEFAULT_RANGE_MB = 32.0


@dataclass(frozen=True)
class TransferSettings:
    connections: int = DEFAULT_CONNECTIONS  # at once, for the whole import
    range_size: int = int(DEFAULT_RANGE_MB * (1 << 20))
    retries: int = 5  # failures of one range in a row, without a byte of progress
    backoff_s: float = 0.5  # the first wait; doubled each time, up to max_backoff_s
    max_backoff_s: float = 8.0
    feed_chunk: int = 8 << 20  # what the feeder reads back at once
    held: int = 64 << 20  # received chunks kept in memory for the feeders, all files together

    @classmethod
    def configured(cls, connections: int | None = None) -> TransferSettings:
        """``connections`` (``--connections``), else ``MODELSTORE_HUB_CONNECTIONS``, else 8;
        the range size from ``MODELSTORE_HUB_RANGE_MB`` (default 32)."""
        def number(name: str, kind: type, default, low):
            raw = os.environ.get(name)
            if raw is None or raw.strip() == "":
                return default
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or value < low:
                raise HubConfigError(name, raw, f"a number of at least {low}")
            return value

        if connections is not None and connections < 1:
            raise HubConfigError("--connections", str(connections), "a number of at least 1")
        conns = connections or number(ENV_CONNECTIONS, int, DEFAULT_CONNECTIONS, 1)
        range_mb = number(ENV_RANGE_MB, float, DEFAULT_RANGE_MB, 0.001)
        return cls(connections=conns, range_size=max(1024, int(range_mb * (1 << 20))),
                   retries=number(ENV_RETRIES, int, 5, 0), backoff_s=number(ENV_BACKOFF, float, 0.5, 0.0))


class SharedProgress:
    """One progress bar for a whole import (bytes, rate, ETA), fed by every connection."""

    def __init__(self, bar_class: type | None, total: int, desc: str = "download"):
        self.lock = threading.Lock()
        self.bar = None
        if bar_class is not None:
            self.bar = bar_class(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                                 mininterval=0.5)

    def __call__(self, n: int) -> None:
        if self.bar is not None and n:
            with self.lock:
                self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
