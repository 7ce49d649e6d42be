"""optimum exports the view to ONNX: ``optimum.exporters.onnx.main_export`` of the view and
of the source (task ``text-generation-with-past``) must write the same files, byte for byte,
and onnxruntime (``ORTModelForCausalLM``) must generate the same greedy tokens from each."""

from __future__ import annotations

import hashlib
import shutil

from _common import failure, parse, report, version

NEW_TOKENS = 8
PROMPT_IDS = [[14, 93, 201, 7, 350, 42]]


def export(folder, out):
    from optimum.exporters.onnx import main_export

    shutil.rmtree(out, ignore_errors=True)
    main_export(str(folder), output=str(out), task="text-generation-with-past", device="cpu")
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def generate(out):
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    model = ORTModelForCausalLM.from_pretrained(str(out))
    ids = torch.tensor(PROMPT_IDS)
    tokens = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False)
    return tokens[0, ids.shape[1]:].tolist()


def main() -> None:
    args = parse()
    differences = []
    src_files = export(args.source, args.work / "onnx-source")
    try:
        view_files = export(args.view, args.work / "onnx-view")
    except BaseException as exc:  # the consumer's error is the finding
        view_files = None
        differences.append(failure("main_export(view)", exc))
    src_tokens = generate(args.work / "onnx-source")
    onnx = src_files.get("model.onnx", b"")
    compared = (f"ONNX export: {len(src_files)} files byte for byte (model.onnx {len(onnx)} B, sha256 "
                f"{hashlib.sha256(onnx).hexdigest()[:12]}...); onnxruntime {NEW_TOKENS} greedy tokens {src_tokens}")
    if view_files is not None:
        if set(view_files) != set(src_files):
            differences.append(f"exported files differ: view {sorted(view_files)} vs source {sorted(src_files)}")
        differences += [f"{name} differs" for name in sorted(set(view_files) & set(src_files))
                        if view_files[name] != src_files[name]]
        view_tokens = generate(args.work / "onnx-view")
        if view_tokens != src_tokens:
            differences.append(f"greedy tokens differ: view {view_tokens} vs source {src_tokens}")
    notes = ""
    if "tokenizer.json" not in src_files:
        try:
            from transformers import AutoTokenizer

            AutoTokenizer.from_pretrained(args.source)
        except Exception as exc:  # the same for view and source: not the view's doing
            notes = (f"tokenizer not exported, from either: this transformers cannot read the source's "
                     f"tokenizer_config.json ({type(exc).__name__}: {str(exc)[:80]})")
    report(args.out, version=version("optimum-onnx", "optimum", "onnxruntime", "transformers"),
           compared=compared, differences=differences, notes=notes)


if __name__ == "__main__":
    main()
