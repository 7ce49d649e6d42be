"""The adapters' errors: architectures modelstore cannot handle, devices, failed smoke tests."""

from __future__ import annotations

from store.errors import VALIDATE, Hint, ModelStoreError, Text


class UnsupportedArchitectureError(ModelStoreError, ValueError):
    def __init__(self, model_type: str | None, supported: list[str], where: str = "",
                 why: str | None = None):
        got = repr(model_type) if model_type else "no model_type"
        super().__init__(
            f"unsupported architecture {got}{where}" + (f": {why}" if why else ""),
            "supported: " + ", ".join(supported),
        )
        self.why = why
        self.model_type = model_type
        self.supported = supported


class DeviceUnavailableError(ModelStoreError, ValueError):
    exit_code = 2

    def __init__(self, device: str, reason: str):
        super().__init__(f"device {device!r} is not available: {reason}",
                         "use --device cpu (or device = \"auto\" to pick the best one present)")
        self.device = device


class ModelCheckError(ModelStoreError, ValueError):
    """A model failed its smoke test (a forward pass with wrong-shaped or non-finite logits)."""

    def __init__(self, message: str, hint: Hint | None = None):
        super().__init__(message, hint or Text("the weights are probably damaged; run `", VALIDATE, "`"))
