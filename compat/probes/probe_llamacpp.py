"""llama.cpp's converter reads the view: ``convert_hf_to_gguf.py`` (from the
``llama-cpp-python`` sdist, with the ``gguf-py`` it ships, as the script itself prefers;
PyPI's ``gguf`` 0.19.0 is too old for it) turns the view and the source
into GGUF files, compared byte for byte, then (if the bytes differ) field by field and tensor
by tensor with ``gguf.GGUFReader``.

The converter names a BPE tokenizer's pre-tokenizer by hashing how it splits a fixed text,
and refuses a hash it does not know. The tiny model's tokenizer uses Qwen2's pre-tokenizer
with its own small vocabulary, so its hash is unknown: the probe answers ``qwen2`` for it
(``TextModel.get_vocab_base_pre``), alike for the view and the source. Each conversion runs
in a process of its own, as the script is meant to be run.
"""

from __future__ import annotations

import hashlib
import runpy
import subprocess
import sys
from pathlib import Path

from _common import error_line, parse, report


def convert(converter: Path, folder: Path, outfile: Path) -> None:
    """Run in a child process: the converter with the pre-tokenizer answer patched in."""
    sys.path.insert(0, str(converter))
    from conversion import base

    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
    sys.argv = ["convert_hf_to_gguf.py", str(folder), "--outtype", "f32", "--outfile", str(outfile)]
    runpy.run_path(str(converter / "convert_hf_to_gguf.py"), run_name="__main__")


def gguf_differences(converter: Path, a: Path, b: Path) -> list[str]:
    sys.path.insert(0, str(converter / "gguf-py"))
    from gguf import GGUFReader

    ra, rb = GGUFReader(a), GGUFReader(b)
    out = []
    fa = {k: f.contents() for k, f in ra.fields.items() if not k.startswith("GGUF.")}
    fb = {k: f.contents() for k, f in rb.fields.items() if not k.startswith("GGUF.")}
    out += [f"metadata {k} differs" for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
    ta = {t.name: (t.tensor_type, tuple(t.shape), t.data.tobytes()) for t in ra.tensors}
    tb = {t.name: (t.tensor_type, tuple(t.shape), t.data.tobytes()) for t in rb.tensors}
    out += [f"tensor {k} differs" for k in sorted(set(ta) | set(tb)) if ta.get(k) != tb.get(k)]
    return out


def gguf_py_version(converter: Path) -> str:
    import re

    text = (converter / "gguf-py" / "pyproject.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def main() -> None:
    if sys.argv[1] == "--convert":
        convert(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
        return
    args = parse(lambda p: p.add_argument("--converter", type=Path, required=True))
    differences, outputs, notes = [], {}, ""
    for label, folder in (("view", args.view), ("source", args.source)):
        out = args.work / f"{label}.gguf"
        out.unlink(missing_ok=True)
        done = subprocess.run([sys.executable, __file__, "--convert", str(args.converter), str(folder), str(out)],
                              capture_output=True, text=True)
        sys.stdout.write(done.stdout + done.stderr)
        if done.returncode:
            cause = error_line(done.stdout + "\n" + done.stderr)
            if label == "source":
                raise SystemExit(f"converting the source failed: {cause}")
            differences.append(f"convert_hf_to_gguf.py(view) failed: {cause}")
        else:
            outputs[label] = out
    compared = "convert_hf_to_gguf.py --outtype f32 of view and source: GGUF bytes"
    if "view" in outputs:
        view_bytes, src_bytes = outputs["view"].read_bytes(), outputs["source"].read_bytes()
        digest = hashlib.sha256(src_bytes).hexdigest()[:12]
        compared += f" ({len(src_bytes)} B, sha256 {digest}...)"
        if view_bytes != src_bytes:
            field_diffs = gguf_differences(args.converter, outputs["view"], outputs["source"])
            if field_diffs:
                differences += field_diffs
            elif (args.source / "model.safetensors.index.json").is_file():
                # A sharded source: the converter writes tensors in its shards' order, the
                # view's in its files' (alphabetical) order. Same file otherwise.
                notes = "bytes differ only in tensor order; metadata and every tensor's data equal"
                compared = compared.replace("GGUF bytes", "GGUF metadata and tensor data")
            else:  # one file: nothing excuses another order
                differences.append("GGUF bytes differ (same fields and tensors, in another order)")
    sdist = args.converter.parent.parent.name.replace("llama_cpp_python-", "llama-cpp-python ")
    report(args.out, version=f"{sdist} (convert_hf_to_gguf.py), gguf-py {gguf_py_version(args.converter)}", compared=compared,
           differences=differences, notes=notes)


if __name__ == "__main__":
    main()
