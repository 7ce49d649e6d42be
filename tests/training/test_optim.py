"""The optimizer: master copies for 16-bit weights, its state as deterministic safetensors bytes."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from training.errors import ResumeError
from training.optim import Optimizer, lr_at, read_safetensors, restore_rng, rng_bytes


def model(dtype=torch.bfloat16) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 4, bias=False)).to(dtype)


def step(net: nn.Module, optimizer: Optimizer, seed: int) -> float:
    torch.manual_seed(seed)
    loss = net(torch.randn(16, 8, dtype=next(net.parameters()).dtype)).float().pow(2).mean()
    loss.backward()
    return optimizer.step(1e-2)


def test_16_bit_weights_are_their_float32_masters_rounded():
    net = model()
    optimizer = Optimizer(dict(net.named_parameters()), lr=1e-2, weight_decay=0.1, grad_clip=1.0)
    assert set(optimizer.masters) == {n for n, _ in net.named_parameters()}
    for seed in range(3):
        step(net, optimizer, seed)
    for name, param in net.named_parameters():
        master = optimizer.masters[name]
        assert master.dtype == torch.float32 and torch.equal(param, master.to(torch.bfloat16))
        assert param.grad is None and master.grad is None


def test_tiny_updates_accumulate_in_the_masters():
    """An update far below bfloat16's rounding step is lost on the 16-bit weight alone."""
    weight = nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    optimizer = Optimizer({"w": weight}, lr=1e-4)
    for _ in range(100):
        weight.grad = torch.ones(4, dtype=torch.bfloat16)
        optimizer.step(1e-4)  # each step moves the master by ~1e-4; bfloat16's step at 1.0 is 2**-7
    assert optimizer.masters["w"][0] < 0.995 and weight[0] < 1.0
    plain = nn.Parameter(torch.ones(4, dtype=torch.bfloat16))  # AdamW straight on bfloat16
    adamw = torch.optim.AdamW([plain], lr=1e-4, weight_decay=0.0)
    for _ in range(100):
        plain.grad = torch.ones(4, dtype=torch.bfloat16)
        adamw.step()
    assert plain[0] == 1.0  # every update rounded away


def test_decay_only_on_matrices():
    net = model(torch.float32)
    optimizer = Optimizer(dict(net.named_parameters()), lr=1e-2, weight_decay=0.1)
    assert optimizer.group_names == [["0.weight", "2.weight"], ["0.bias", "1.weight", "1.bias"]]
    assert [g["weight_decay"] for g in optimizer.adamw.param_groups] == [0.1, 0.0]
    assert not optimizer.masters  # float32 weights are updated directly


def test_state_round_trips_and_its_bytes_are_deterministic():
    net = model()
    optimizer = Optimizer(dict(net.named_parameters()), lr=1e-2, grad_clip=1.0)
    step(net, optimizer, 0)
    data = optimizer.state_bytes()
    assert optimizer.state_bytes() == data
    tensors, metadata = read_safetensors(data)
    assert metadata["optimizer"] == "AdamW" and "exp_avg/0.weight" in tensors and "master/0.weight" in tensors

    copy = model()  # a fresh process: weights as stored (the bf16 ones), state from the bytes
    copy.load_state_dict(net.state_dict())
    restored = Optimizer(dict(copy.named_parameters()), lr=1e-2, grad_clip=1.0)
    restored.load_state_bytes(data)
    assert restored.state_bytes() == data
    assert step(net, optimizer, 1) == step(copy, restored, 1)
    for (name, a), b in zip(net.named_parameters(), copy.parameters()):
        assert torch.equal(a, b), name


def test_state_for_other_parameters_is_refused():
    net = model()
    data = Optimizer(dict(net.named_parameters()), lr=1e-2).state_bytes()
    fewer = Optimizer({n: p for n, p in net.named_parameters() if n != "1.bias"}, lr=1e-2)
    with pytest.raises(ResumeError, match="other trainable parameters than this config's .*1.bias.*freeze"):
        fewer.load_state_bytes(data)


def test_rng_state_round_trips():
    torch.manual_seed(3)
    data = rng_bytes()
    expected = torch.rand(4)
    torch.manual_seed(4)
    restore_rng(data)
    assert torch.equal(torch.rand(4), expected)


def test_warmup_then_constant():
    assert [lr_at(s, 1.0, 4) for s in (1, 2, 4, 5, 100)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert lr_at(1, 0.5, 0) == 0.5
