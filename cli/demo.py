"""``make demo``: the product's main job on an embedded default, end to end, in well under
two minutes on two cores.

Builds a tiny Qwen2-architecture model folder (random bfloat16 weights, the project's own
tokenizer), then drives the real CLI, exactly as a user would type it, against a fresh
workspace in ``demo/``:

1. import the folder into the store;
2. fine-tune it on the project's corpus with its embedding and first three layers frozen,
   a checkpoint every 20 steps (each stores only the trained tensors and optimizer state);
3. list the models, show the fine-tune's lineage and info (with its checkpoints), the
   store's disk usage and dedup ratio, and generate text with the fine-tune and with one of
   its checkpoints (``NAME@step-N``);
4. load the fine-tune's view with stock ``transformers`` and check it gives our logits;
5. flip one byte in a blob both models share, let ``validate-registry`` find it and
   ``validate-registry --fix`` quarantine and restore it from the imported folder.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo"
BASE, TUNED = "tiny-qwen2", "tiny-qwen2-ft"
# A tiny model: torch's intra-op threads would cost more than they give (and on a busy
# machine, far more), so the demo's commands run single-threaded.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

FINETUNE_TOML = f"""\
# Fine-tune {BASE} with its embedding and layers 0-2 frozen (79% of its weights).
model_name = "{BASE}"
data = "{REPO / 'data' / 'corpus.txt'}"
output_name = "{TUNED}"
freeze = ["model.embed_tokens.*", "model.layers.[0-2].*"]
seq_len = 64
batch_size = 8
lr = 3e-3
warmup_steps = 5
max_steps = 60
save_every = 20
eval_every = 20
device = "cpu"
"""


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def cli(*args: str, expect: int = 0) -> None:
    """Run ``python main.py ARGS`` in the demo workspace and show the command first."""
    print("$ python main.py " + " ".join(shlex.quote(a) for a in args), flush=True)
    code = subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=DEMO, env=ENV).returncode
    if code != expect:
        raise SystemExit(f"demo failed: `python main.py {' '.join(args)}` exited with {code}, "
                         f"expected {expect}")


def build_source(folder: Path) -> None:
    from tests.fixtures.tiny import write_tiny_model  # the demo model is the tests' tiny Qwen2

    write_tiny_model(folder, "qwen2", hidden_size=64, num_layers=4, dtype="bfloat16", seed=7)


def compare_with_stock_transformers(view: Path) -> None:
    """Stock transformers loads the fine-tune's view (symlinks into the store) and gives
    exactly the logits modelstore's own loader gives."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from registry.workspace import Workspace
    from training.models import load_model

    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(view)
    tokens = tokenizer("The little robot found a red ball.", return_tensors="pt").input_ids
    with torch.no_grad():
        stock = AutoModelForCausalLM.from_pretrained(view)(tokens).logits
        ours = load_model(Workspace.open(DEMO), TUNED, device="cpu").model(tokens).logits
    same = torch.equal(stock, ours)
    print(f"AutoModelForCausalLM.from_pretrained('{view.relative_to(DEMO)}'): {tokens.shape[1]} tokens, "
          f"logits {tuple(stock.shape)} {stock.dtype}, {'bit-identical to' if same else 'DIFFERENT from'} "
          f"modelstore's loader")
    if not same:
        raise SystemExit("demo failed: the view does not reproduce the stored model")


def flip_a_byte(view: Path, tensor: str) -> Path:
    """Simulate bit rot: flip one byte of a tensor's data in its blob (past the header)."""
    from registry.views import tensor_relpath

    blob = (view / tensor_relpath(tensor)).resolve()
    mode = blob.stat().st_mode
    blob.chmod(mode | 0o200)  # blobs are read-only; rot does not ask
    with open(blob, "r+b") as f:
        header = int.from_bytes(f.read(8), "little")
        f.seek(8 + header + 100)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    blob.chmod(mode)
    return blob


def main() -> None:
    started = time.perf_counter()
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    source = DEMO / BASE

    step("Build a tiny Qwen2-architecture model folder (random bf16 weights, our own tokenizer)")
    build_source(source)
    print("\n".join(sorted(p.name for p in source.iterdir())))

    step("Import it into the store")
    cli("import-model", f"./{BASE}", "--name", BASE)

    step("Fine-tune it with frozen layers: each checkpoint stores only what changed")
    (DEMO / "finetune.toml").write_text(FINETUNE_TOML)
    print("$ cat finetune.toml\n" + FINETUNE_TOML.rstrip())
    cli("train", "--config", "finetune.toml")

    step("List the registered models")
    cli("list-models")

    step("Lineage: the base, then the fine-tune (its intermediate checkpoints folded in)")
    cli("lineage", TUNED)

    step("Everything about the fine-tune, with its checkpoints")
    cli("model-info", TUNED)

    step("Disk usage: the fine-tune shares every frozen tensor with its base")
    cli("du")

    step("Generate with the fine-tune and with one of its checkpoints (60 steps on a tiny random model: "
         "expect babble, not prose)")
    sampling = ("--prompt", "Ada went to the", "--max-new-tokens", "24", "--seed", "0")
    cli("generate", TUNED, *sampling)
    cli("generate", f"{TUNED}@step-20", *sampling)

    step("Load the fine-tune through its view with stock transformers")
    compare_with_stock_transformers(DEMO / "models" / TUNED)

    step("Flip one byte in a blob both models share (a frozen tensor), as bit rot would")
    blob = flip_a_byte(DEMO / "models" / BASE, "model.layers.0.mlp.down_proj.weight")
    print(f"flipped a byte of {blob.relative_to(DEMO)}")
    cli("validate-registry", expect=1)

    step("Repair it: quarantine the bad blob, restore it from the imported folder")
    cli("validate-registry", "--fix", "--yes")
    cli("validate-registry")

    print(f"\ndemo finished in {time.perf_counter() - started:.1f} s; the workspace is in {DEMO}/")


if __name__ == "__main__":
    main()
