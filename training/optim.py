"""The optimizer of a run, and its state (with the RNG's) as bytes for the store.

AdamW over the trainable parameters only: frozen parameters have no gradient, no moments
and no place in the saved state, which for a fine-tune is most of the model. Weight decay
applies to matrices (``ndim >= 2``), not to norms and biases, as in nanoGPT. The learning
rate warms up linearly over ``warmup_steps`` and then stays constant: the schedule does not
depend on ``max_steps``, so a finished run can be continued with ``--resume`` and a larger
``max_steps`` and follow the same curve as one run straight to the end.

Mixed precision. A model stored in bfloat16 (or float16) trains in that dtype: the forward
and backward passes run in it and checkpoints store it, so frozen tensors stay exactly the
base model's blobs. But each trainable parameter gets a float32 *master copy*, which is what
AdamW updates; the 16-bit parameter is the master rounded after each step. Updating 16-bit
weights directly would drop every update smaller than their rounding step (about 0.4% of a
weight's magnitude in bfloat16): with fine-tuning learning rates, most of them. The masters
are saved with the optimizer state, so a resumed run continues from the same float32 weights.

State on disk is safetensors, never pickle (loading a pickle can run arbitrary code):
``optimizer.safetensors`` holds ``exp_avg/NAME``, ``exp_avg_sq/NAME``, ``step/NAME`` and, with
mixed precision, ``master/NAME`` for each trainable parameter NAME, and records the
hyper-parameters in its metadata; ``rng.safetensors`` holds torch's CPU RNG state and each
CUDA device's (dropout draws from them).
"""

from __future__ import annotations

import json

import torch
import torch.nn as nn

from training.errors import ResumeError

BETAS = (0.9, 0.95)
EPS = 1e-8
STATE_FORMAT = "1"
_KINDS = ("exp_avg", "exp_avg_sq", "step")


def lr_at(step: int, lr: float, warmup_steps: int) -> float:
    """Learning rate of update number ``step`` (1-based)."""
    return lr * min(1.0, step / warmup_steps) if warmup_steps else lr


class Optimizer:
    """AdamW on ``params`` (name -> trainable parameter), with float32 masters for 16-bit ones."""

    def __init__(self, params: dict[str, nn.Parameter], *, lr: float, weight_decay: float = 0.0,
                 grad_clip: float = 0.0):
        self.params = params
        self.grad_clip = grad_clip
        self.masters = {name: p.detach().float().clone() for name, p in params.items()
                        if p.dtype != torch.float32}
        self.updated = {name: self.masters.get(name, p) for name, p in params.items()}
        decay = [n for n, p in params.items() if p.ndim >= 2]
        no_decay = [n for n, p in params.items() if p.ndim < 2]
        self.group_names = [decay, no_decay]
        groups = [{"params": [self.updated[n] for n in names], "weight_decay": wd}
                  for names, wd in ((decay, weight_decay), (no_decay, 0.0))]
        # foreach=False: one kernel per tensor, the same arithmetic on every device and build.
        self.adamw = torch.optim.AdamW(groups, lr=lr, betas=BETAS, eps=EPS, foreach=False)

    @property
    def order(self) -> list[str]:
        """Parameter names in the optimizer's own (state-dict index) order."""
        return [n for names in self.group_names for n in names]

    def step(self, lr: float) -> float:
        """Apply the gradients the backward pass left on ``params``; return their global norm."""
        for name, master in self.masters.items():
            grad = self.params[name].grad
            master.grad = None if grad is None else grad.float()
            self.params[name].grad = None
        tensors = list(self.updated.values())
        # With no clipping the norm is still measured (and scaling by 1.0 changes nothing).
        norm = torch.nn.utils.clip_grad_norm_(tensors, self.grad_clip or float("inf"))
        for group in self.adamw.param_groups:
            group["lr"] = lr
        self.adamw.step()
        self.adamw.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, master in self.masters.items():
                self.params[name].copy_(master)  # the 16-bit weight is the rounded master
        return float(norm)

    # --- state -----------------------------------------------------------------------------

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The whole state as named CPU tensors plus safetensors metadata."""
        state = self.adamw.state_dict()
        order = self.order
        tensors: dict[str, torch.Tensor] = {}
        for index, entry in state["state"].items():
            for kind in _KINDS:
                tensors[f"{kind}/{order[index]}"] = entry[kind].detach().cpu().contiguous()
        for name, master in self.masters.items():
            tensors[f"master/{name}"] = master.detach().cpu().contiguous()
        groups = [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]]
        metadata = {"format": STATE_FORMAT, "optimizer": "AdamW", "param_groups": json.dumps(groups),
                    "params": json.dumps(self.group_names)}
        return tensors, metadata

    def load_state(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        """Restore what ``state_tensors`` saved, for exactly the same trainable parameters."""
        if metadata.get("format") != STATE_FORMAT or metadata.get("optimizer") != "AdamW":
            raise ResumeError(f"the checkpoint's optimizer state has format {metadata.get('format')!r} "
                              f"({metadata.get('optimizer')}); this version reads AdamW format "
                              f"{STATE_FORMAT}")
        saved_names = json.loads(metadata["params"])
        if saved_names != self.group_names:
            saved = {n for names in saved_names for n in names}
            now = set(self.order)
            diff = sorted(saved ^ now)
            raise ResumeError(f"the checkpoint's optimizer state is for other trainable parameters than "
                              f"this config's (e.g. {diff[0] if diff else 'their order'}): freeze changed?")
        groups = json.loads(metadata["param_groups"])
        state = {"param_groups": [], "state": {}}
        index = 0
        for names, group in zip(self.group_names, groups):
            state["param_groups"].append({**group, "params": list(range(index, index + len(names)))})
            for name in names:
                if f"step/{name}" in tensors:
                    state["state"][index] = {kind: tensors[f"{kind}/{name}"] for kind in _KINDS}
                index += 1
        self.adamw.load_state_dict(state)
        with torch.no_grad():
            for name, master in self.masters.items():
                master.copy_(tensors[f"master/{name}"])
                self.params[name].copy_(master)

    def state_bytes(self) -> bytes:
        tensors, metadata = self.state_tensors()
        return safetensors_bytes(tensors, metadata)

    def load_state_bytes(self, data: bytes) -> None:
        tensors, metadata = read_safetensors(data)
        self.load_state(tensors, metadata)


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file with a sorted header and tensors in name order: the same state always
    gives the same bytes, hence the same blob (``safetensors.torch.save`` orders its metadata
    by a hash map, which differs from one process to the next)."""
    from adapters.blobs import dtype_name, raw_bytes

    header: dict[str, object] = {"__metadata__": dict(metadata)}
    chunks, offset = [], 0
    for name in sorted(tensors):
        data = raw_bytes(tensors[name])
        header[name] = {"dtype": dtype_name(tensors[name].dtype), "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return b"".join([len(raw).to_bytes(8, "little"), raw, *chunks])


def read_safetensors(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of safetensors bytes (the header is JSON after an 8-byte length)."""
    from safetensors.torch import load

    header_len = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
    return load(data), metadata


# --- RNG state -------------------------------------------------------------------------------


def rng_bytes() -> bytes:
    """torch's global RNG states (CPU, and each CUDA device in use) as safetensors."""
    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            tensors[f"cuda:{i}"] = torch.cuda.get_rng_state(i)
    return safetensors_bytes(tensors, {"format": STATE_FORMAT})


def restore_rng(data: bytes) -> None:
    tensors, _ = read_safetensors(data)
    torch.set_rng_state(tensors["cpu"])
    for key, state in tensors.items():
        if key.startswith("cuda:") and torch.cuda.is_available():
            index = int(key.split(":")[1])
            if index < torch.cuda.device_count():
                torch.cuda.set_rng_state(state, index)
