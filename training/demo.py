"""``make demo``: the product's main job on an embedded default, end to end.

Builds a tiny Qwen2-architecture model folder (random weights, the project's own
tokenizer), then drives the real CLI, exactly as a user would type it, against a fresh
workspace in ``demo/``: import the folder, list the models, show the model's info, and load
it through its view with stock ``transformers`` to compare logits with the original folder.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo"


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def cli(*args: str) -> None:
    """Run ``python main.py ARGS`` in the demo workspace and show the command first."""
    print("$ python main.py " + " ".join(shlex.quote(a) for a in args), flush=True)
    subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=DEMO, check=True)


def build_source(folder: Path) -> None:
    from adapters.tiny import write_tiny_model

    write_tiny_model(folder, "qwen2", hidden_size=64, num_layers=2, dtype="bfloat16", seed=7)


def compare_logits(source: Path, view: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(view)
    tokens = tokenizer("The little robot found a red ball.", return_tensors="pt").input_ids
    with torch.no_grad():
        original = AutoModelForCausalLM.from_pretrained(source)(tokens).logits
        from_view = AutoModelForCausalLM.from_pretrained(view)(tokens).logits
    same = torch.equal(original, from_view)
    print(f"AutoModelForCausalLM.from_pretrained('{view.relative_to(DEMO)}'): "
          f"{tokens.shape[1]} tokens, logits {tuple(from_view.shape)} {from_view.dtype}, "
          f"{'bit-identical to' if same else 'DIFFERENT from'} the original folder")
    if not same:
        raise SystemExit("demo failed: the view does not reproduce the original model")


def main() -> None:
    started = time.perf_counter()
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    source = DEMO / "tiny-qwen2"

    step("Build a tiny Qwen2-architecture model folder (random bf16 weights, our own tokenizer)")
    build_source(source)
    print("\n".join(sorted(p.name for p in source.iterdir())))

    step("Import it into the store")
    cli("import-model", "./tiny-qwen2", "--name", "tiny-qwen2")

    step("Import it again under a second name: every blob is shared")
    cli("import-model", "./tiny-qwen2", "--name", "tiny-qwen2-copy")

    step("List the registered models")
    cli("list-models")

    step("Inspect one")
    cli("model-info", "tiny-qwen2")

    step("Load it through its view with stock transformers")
    compare_logits(source, DEMO / "models" / "tiny-qwen2")

    print(f"\ndemo finished in {time.perf_counter() - started:.1f} s; the workspace is in {DEMO}/")


if __name__ == "__main__":
    main()
