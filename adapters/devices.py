"""Choosing where a model runs and in which precision, from the words a user types.

``device``: ``auto`` (cuda, else mps, else cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
``dtype``: ``auto`` keeps the dtype the weights are stored in (a bfloat16 checkpoint stays
bfloat16; converting would double memory for nothing), or ``float32``, ``bfloat16``,
``float16`` to convert on load.
"""

from __future__ import annotations

import re

import torch

from adapters.errors import DeviceUnavailableError
from store.errors import UsageError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def is_device_spec(spec: str) -> bool:
    return bool(_DEVICE.match(spec))


def resolve_device(spec: str | None) -> torch.device:
    """The torch device for ``spec``; raise a one-line error when it cannot be used here."""
    spec = (spec or "auto").strip().lower()
    if not is_device_spec(spec):
        raise UsageError(f"unknown device {spec!r}", "use auto, cpu, cuda, cuda:N or mps")
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(spec, f"this torch ({torch.__version__}) sees no CUDA GPU")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(spec, f"only {torch.cuda.device_count()} CUDA device(s) are visible")
    if spec == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(spec, "this torch sees no Apple GPU (MPS)")
    return torch.device(spec)


def resolve_dtype(spec: str | None) -> torch.dtype | None:
    """The dtype to convert to, or None to keep the stored one (``auto``)."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return None
    if spec not in DTYPES:
        raise UsageError(f"unknown dtype {spec!r}", "use " + ", ".join(DTYPE_CHOICES))
    return DTYPES[spec]
