"""accelerate loads the view: ``init_empty_weights`` + ``load_checkpoint_and_dispatch`` on the
view and on the source give the same parameters, the same logits and the same greedy tokens."""

from __future__ import annotations

import torch
from accelerate import init_empty_weights, load_checkpoint_and_dispatch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from _common import failure, file_tensors, parse, report, tensor_differences, version

PROMPT = "The store keeps every tensor once"
NEW_TOKENS = 8


def load(folder):
    config = AutoConfig.from_pretrained(folder)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.tie_weights()
    model = load_checkpoint_and_dispatch(model, str(folder), device_map={"": "cpu"}, dtype=torch.float32)
    return model.eval()


def run(folder):
    model = load(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
        tokens = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)[0, ids.shape[1]:]
    return model, logits, tokens.tolist()


def main() -> None:
    args = parse()
    differences = []
    try:
        view_model, view_logits, view_tokens = run(args.view)
    except BaseException as exc:  # the consumer's error is the finding
        view_model = None
        differences.append(failure("load_checkpoint_and_dispatch(view)", exc))
    src_model, src_logits, src_tokens = run(args.source)
    files = file_tensors(args.source)
    src_state = {k: v for k, v in src_model.state_dict().items() if k in files}
    differences += tensor_differences(src_state, files, "source model vs source files")
    if view_model is not None:
        view_state = {k: v for k, v in view_model.state_dict().items() if k in files}
        differences += tensor_differences(view_state, src_state, "parameters, view vs source")
        if not torch.equal(view_logits, src_logits):
            differences.append("logits differ")
        if view_tokens != src_tokens:
            differences.append(f"greedy tokens differ: view {view_tokens} vs source {src_tokens}")
    report(args.out, version=version("accelerate", "transformers"),
           compared=f"parameters ({len(files)}), logits, {NEW_TOKENS} greedy tokens {src_tokens}",
           differences=differences)


if __name__ == "__main__":
    main()
