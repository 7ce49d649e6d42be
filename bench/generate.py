"""Benchmark: ``generate`` of the 1 GB model (load with verification + one token) vs stock transformers.

Issue 22's target: ``python main.py generate NAME --max-new-tokens 1`` (the model loaded from
its blobs, every blob it reads checked against its digest, then one greedy token) takes at
most 1.2x a stock transformers process that loads the same model's view with
``AutoModelForCausalLM.from_pretrained`` and generates one token, in the same run. Both are
timed as processes (interpreter, imports, load, one token), alternating, on a warm page
cache, with one torch thread each (what ``generate`` picks on this machine's model size
is the baseline's too: ``OMP_NUM_THREADS`` is set for both).

Usage: ``python -m bench.generate [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench.common import alternate, bench_model, compile_project, main_py, report, run, warm

TARGET = 1.2
PROMPT = "Once upon a time"

STOCK = """
import sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
view = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(view)
model = AutoModelForCausalLM.from_pretrained(view)
ids = tokenizer(sys.argv[2], return_tensors="pt").input_ids
with torch.inference_mode():
    out = model.generate(ids, max_new_tokens=1, do_sample=False)
print(tokenizer.decode(out[0, ids.shape[1]:]))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    compile_project()
    source = bench_model()
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 2)))
    os.environ["OMP_NUM_THREADS"] = threads  # children inherit it: the same threads on both sides
    with tempfile.TemporaryDirectory(prefix="modelstore-bench-generate-", dir=source.parent) as tmp:
        root = Path(tmp) / "ws"
        main_py("import-model", source, "--name", "qwen", root=root)
        view = root / "models" / "qwen"
        warm(source)
        script = Path(tmp) / "stock.py"
        script.write_text(STOCK)
        contenders = {
            "transformers: from_pretrained(view) + 1 token": lambda: run(sys.executable, script, view, PROMPT),
            "modelstore generate (verified) + 1 token": lambda: main_py(
                "generate", "qwen", "--prompt", PROMPT, "--max-new-tokens", "1", "--temperature", "0",
                "--device", "cpu", root=root),
        }
        times = alternate(args.rounds, contenders)
        result = report("generate", times, baseline="transformers: from_pretrained(view) + 1 token",
                        target=f"<= {TARGET}x", threads=threads)
    ratio = result["ratio_to_transformers: from_pretrained(view) + 1 token"][
        "modelstore generate (verified) + 1 token"]
    print(f"generate: {ratio:.2f}x stock transformers ({'meets' if ratio <= TARGET else 'MISSES'} {TARGET}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
