"""Issue 6's figures: checkpoints of a fine-tune with 75% of its tensor bytes frozen.

On the Qwen2.5-0.5B-shaped bf16 model (``bench.make_model``: ~1 GB, 290 tensors), imported
into a fresh store, with the embedding and the first 16 of 24 layers frozen (75.8% of the
tensor bytes):

1. save time (alternating rounds, warm page cache; before each timed save the trained
   parameters get new values, untimed, so every save has new tensors to write):

   - "save every tensor": every tensor hashed and written, into an empty store: what a
     checkpoint costs without deduplication (the baseline);
   - "checkpoint (frozen skipped)": what ``train`` does, ``Adapter.save_tensors`` with the
     frozen tensors skipped (reused from the parent's manifest, neither read nor hashed)
     and the trained ones hashed and written; target at most 0.4x the baseline;
   - "hash every tensor": no skipping, but dedup by hash against the store that holds the
     base model: the frozen tensors are hashed, found and not written (for reference).

   Weights only: the optimizer state (float32 master copies and AdamW moments of the
   trained parameters, 6x their bf16 bytes) is written by every checkpoint whatever the
   dedup, and is reported apart from one real ``train`` run (2.).

2. store growth of a real run: ``train`` for 4 steps with a checkpoint after each, measured
   with ``du``'s numbers (``registry.space.du.disk_usage``); target: growth at most
   4 x the trained tensor bytes + the optimizer state stored + 1% of the model's bytes.

Usage::

    python -m bench.checkpoint [--rounds 5] [--skip-growth]
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
from pathlib import Path

import torch

from bench.common import OUT, alternate, bench_model, fresh, report, warm

FREEZE = ["model.embed_tokens.*"] + [f"model.layers.{i}.*" for i in range(16)]


def frozen_fraction(manifest) -> tuple[int, int]:
    frozen = sum(t.nbytes for n, t in manifest.tensors.items() if is_frozen(n))
    return frozen, manifest.tensor_bytes


def is_frozen(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in FREEZE)


def save_times(rounds: int, work: Path) -> dict:
    from adapters import get_adapter
    from registry.ingest.folder import import_folder
    from registry.workspace import Workspace
    from store.layout import Layout
    from store.objects import ObjectStore

    source = bench_model()
    warm(source)
    ws = Workspace.open(fresh(work / "store"))
    base = import_folder(ws, source, name="qwen")
    frozen_bytes, total = frozen_fraction(base.manifest)
    adapter = get_adapter("qwen2")
    model = adapter.load_manifest(ws.objects, base.manifest)
    frozen = adapter.params_matching(model, FREEZE)
    trained = {n: p for n, p in model.named_parameters() if n not in frozen}
    skip = set(adapter.memory_state(model)) - set(trained)
    generator = torch.Generator().manual_seed(0)

    def new_weights() -> None:  # an optimizer step's worth of change, untimed
        with torch.no_grad():
            for p in trained.values():
                p.add_(torch.randn(p.shape, generator=generator).to(p.dtype), alpha=1e-3)

    empty = Layout(work / "empty")

    def before_each() -> None:
        new_weights()
        fresh(empty.root)
        empty.create()

    times = alternate(rounds, {
        "save every tensor": lambda: adapter.save_tensors(model, ObjectStore(empty)),
        "checkpoint (frozen skipped)": lambda: adapter.save_tensors(model, ws.objects, skip=skip,
                                                                     known=base.manifest.tensors),
        "hash every tensor": lambda: adapter.save_tensors(model, ws.objects),
    }, before_each=before_each)
    trained_bytes = sum(p.numel() * p.element_size() for p in trained.values())
    result = report("checkpoint-save", times, "save every tensor", "checkpoint <= 0.4x saving every tensor",
                    frozen_share=f"{frozen_bytes / total:.1%} of {total / 1e9:.2f} GB frozen",
                    trained_bytes=trained_bytes)
    fresh(work)
    return result


def growth(work: Path) -> dict:
    from registry.checkpoints import run_checkpoints
    from registry.ingest.folder import import_folder
    from registry.space.du import disk_usage
    from registry.workspace import Workspace
    from training.config import PROJECT_CORPUS, RunConfig
    from training.train import train

    ws = Workspace.open(fresh(work / "growth"))
    base = import_folder(ws, bench_model(), name="qwen")
    frozen_bytes, total = frozen_fraction(base.manifest)
    trained_bytes = sum(t.blob_size(n) for n, t in base.manifest.tensors.items() if not is_frozen(n))
    before = disk_usage(ws)
    config = RunConfig(model_name="qwen", data=str(PROJECT_CORPUS), seq_len=32, batch_size=1, lr=1e-5,
                       max_steps=4, save_every=1, eval_every=0, eval_fraction=0.0, freeze=FREEZE,
                       output_name="qwen-ft", device="cpu")
    result = train(ws, config)
    after = disk_usage(ws)
    checkpoints = [ws.manifest(c.digest) for c in run_checkpoints(ws, result.entry.manifest)]
    state = sum({f.digest: f.size for m in checkpoints for f in m.training.optimizer.values()}.values())
    grown = after.stored_bytes - before.stored_bytes
    bound = 4 * trained_bytes + state + 0.01 * total
    saves = [c.seconds for c in result.checkpoints]
    summary = {"bench": "checkpoint-growth", "target": "growth <= 4 x trained + optimizer state + 1%",
               "checkpoints": len(checkpoints), "grown_bytes": grown, "bound_bytes": int(bound),
               "trained_bytes": trained_bytes, "optimizer_state_bytes": state,
               "frozen_share": f"{frozen_bytes / total:.1%}", "meets": grown <= bound,
               "checkpoint_seconds_with_state": saves}
    print(f"\n[checkpoint-growth] target: {summary['target']}")
    print(f"  4 checkpoints grew the store by {grown / 1e6:.1f} MB; bound {bound / 1e6:.1f} MB "
          f"= 4 x {trained_bytes / 1e6:.1f} MB trained + {state / 1e6:.1f} MB optimizer state + "
          f"{0.01 * total / 1e6:.1f} MB ({'meets' if grown <= bound else 'EXCEEDS'} it)")
    print(f"  full checkpoints (weights + optimizer state), seconds: {', '.join(f'{s:.2f}' for s in saves)}")
    import json

    with open(OUT / "results.jsonl", "a") as f:
        f.write(json.dumps(summary) + "\n")
    fresh(work)
    return summary


def main(rounds: int = 5, skip_growth: bool = False) -> list[dict]:
    work = fresh(OUT / "checkpoint")
    work.mkdir()
    try:
        results = [save_times(rounds, work)]
        if not skip_growth:
            results.append(growth(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-growth", action="store_true", help="only the save-time rounds")
    args = parser.parse_args()
    main(args.rounds, args.skip_growth)
