"""Dedup, measured with `du`'s own numbers (registry.space.du.disk_usage): a fine-tune costs the
tensors it trains plus its optimizer state, and fine-tunes of one base share its frozen tensors."""

from __future__ import annotations

import fnmatch

from registry.ops import get_model
from registry.checkpoints import run_checkpoints
from registry.space.du import disk_usage
from tests.training.runs import FREEZE_75, import_base, run_config
from training.train import train


def by_name(usage):
    return {m.name: m for m in usage.models}


def test_four_checkpoints_with_75_percent_frozen_cost_trained_bytes_and_state(workspace, tiny_model):
    # 10 MB of weights: large enough that manifests (a few KB each) are the small change the
    # bound's 1% is for, as they are next to any real model.
    base = import_base(workspace, tiny_model, hidden_size=256)
    frozen = {n for n in base.manifest.tensors if any(fnmatch.fnmatchcase(n, p) for p in FREEZE_75)}
    sizes = {n: t.blob_size(n) for n, t in base.manifest.tensors.items()}
    frozen_bytes = sum(sizes[n] for n in frozen)
    assert frozen_bytes >= 0.75 * sum(sizes.values())
    trainable_bytes = sum(size for n, size in sizes.items() if n not in frozen)

    before = disk_usage(workspace)
    result = train(workspace, run_config(model_name="base", freeze=FREEZE_75, max_steps=8, save_every=2))
    after = disk_usage(workspace)
    assert [c.step for c in result.checkpoints] == [2, 4, 6, 8]

    _, manifest = get_model(workspace, "ft")
    checkpoints = [workspace.manifest(c.digest) for c in run_checkpoints(workspace, result.entry.manifest)]
    assert len(checkpoints) == 4
    # Optimizer, RNG and trainer state blobs (an RNG state nothing drew from is stored once).
    state_blobs = {f.digest: f.size for m in checkpoints for f in m.training.optimizer.values()}
    optimizer_bytes = sum(state_blobs.values())
    growth = after.stored_bytes - before.stored_bytes
    bound = 4 * trainable_bytes + optimizer_bytes + 0.01 * base.manifest.tensor_bytes
    assert growth <= bound, (growth, bound)
    # ... and what the bound allows beyond trained tensors and state is only the 4 small manifests.
    manifests = sum(workspace.objects.size(c.digest) for c in result.checkpoints)
    assert growth == 4 * trainable_bytes + optimizer_bytes + manifests

    usage = by_name(after)
    # The registered fine-tune shares every frozen blob (and config, tokenizer) with its base...
    shared_with_base = set(base.manifest.object_digests()) & manifest.object_digests()
    assert {base.manifest.tensors[n].digest for n in frozen} <= shared_with_base
    assert usage["ft"].shared_bytes == sum(manifest.expected_sizes()[d] for d in shared_with_base)
    # ... and holds alone its trained tensors, its optimizer state and its manifest.
    own_state = sum(f.size for f in manifest.training.optimizer.values())
    assert usage["ft"].exclusive_bytes == trainable_bytes + own_state + workspace.objects.size(
        result.entry.manifest)
    # The three older checkpoints' trained tensors and state are what gc would free.
    assert after.unreferenced_bytes - before.unreferenced_bytes == growth - usage["ft"].exclusive_bytes


def test_a_second_fine_tune_shares_every_frozen_tensor_with_the_first(workspace, tiny_model):
    base = import_base(workspace, tiny_model)
    train(workspace, run_config(model_name="base", freeze=FREEZE_75, output_name="ft-a"))
    before = disk_usage(workspace)
    train(workspace, run_config(model_name="base", freeze=FREEZE_75, output_name="ft-b", seed=1, lr=1e-3))
    after = disk_usage(workspace)
    _, a = get_model(workspace, "ft-a")
    _, b = get_model(workspace, "ft-b")
    frozen = {n for n in base.manifest.tensors if any(fnmatch.fnmatchcase(n, p) for p in FREEZE_75)}
    for name in frozen:
        assert a.tensors[name] == b.tensors[name] == base.manifest.tensors[name]
    assert all(a.tensors[n].digest != b.tensors[n].digest for n in set(a.tensors) - frozen
               if not n.endswith("norm.weight"))
    usage = by_name(after)
    frozen_blobs = sum(t.blob_size(n) for n, t in base.manifest.tensors.items() if n in frozen)
    assert usage["ft-b"].shared_bytes >= frozen_blobs
    # The second fine-tune added nothing but its own trained tensors, state and manifests.
    trained = sum(t.blob_size(n) for n, t in b.tensors.items() if n not in frozen)
    assert after.referenced_bytes - before.referenced_bytes == usage["ft-b"].exclusive_bytes
    assert usage["ft-b"].exclusive_bytes == trained + sum(f.size for f in b.training.optimizer.values()) \
        + workspace.objects.size(get_model(workspace, "ft-b")[0].manifest)
    assert after.dedup_ratio > before.dedup_ratio
