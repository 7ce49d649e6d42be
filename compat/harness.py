"""``make compat``: each consumer reads a modelstore view and its source folder; any difference fails.

The run: a tiny Qwen2 model (hidden size 128, 4 heads of head_dim 32, as vLLM's CPU attention
needs; two layers; the project's own tiny tokenizer; weight matrices scaled up so that greedy
decoding does not repeat one token) is written with ``tests.fixtures.tiny.write_tiny_model``
twice, as one ``model.safetensors`` (``src/tiny``) and as two shards with an index
(``src/tiny-sharded``), and each is imported into a fresh store under ``compat/out/run/`` with
``python main.py --root compat/out/run/store import-model SRC --name NAME``.
Then, one consumer at a time (the machine has two cores), its pinned venv is built or reused
(``compat.venvs``) and its probe (``compat/probes/probe_<consumer>.py``) loads or converts the
view ``models/tiny/`` and the source folder and compares them: generated tokens (greedy),
tensors, converted bytes. Results: a markdown table on stdout and in
``compat/out/results.md``, the probes' JSON in ``compat/out/results/``, their logs (and pip's)
in ``compat/out/logs/``.

Exit status, the policy:

* 0 when every consumer that installed read the view as it read the source;
* 1 when a probe found a difference (the view behaved otherwise than its source: a product
  bug), or a consumer that installed failed to run (crashed, timed out, or could not read
  even the source: the harness is broken, and a broken harness proves nothing);
* a consumer whose pinned install fails is not run and does not change the exit status: its
  row says ``not run: <reason>`` (one line from pip). Installs depend on what the package
  registry serves for this machine, which the project does not control.

A negative control keeps the probes honest: for vLLM and DCP (the consumers issue 22 found
failing on the views of that time) the ``tiny`` view is rebuilt in the earlier layout (tensor
links under ``weights/``) and the probe must report it as different; a probe that calls it
the same fails the run.

``python -m compat [CONSUMER ...]`` runs a subset.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from compat import venvs
from compat.venvs import COMPAT_DIR, LOGS_DIR, OUT_DIR

REPO = COMPAT_DIR.parent
CONSUMERS = ("vllm", "optimum", "accelerate", "dcp", "llamacpp")
CONTROL = "tiny-earlier-layout"  # a negative control for the consumers issue 22 found failing
CONTROL_CONSUMERS = ("vllm", "dcp")
PROBE_TIMEOUT_S = 1200
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"  # its sdist carries llama.cpp's converter
MODEL = dict(model_type="qwen2", hidden_size=128, num_layers=2, vocab_size=512, seed=0)
# The view is the same kind of folder whatever the source; the source is one file or shards
# with an index (llama.cpp then writes the tensors in the shards' order, not the view's).
SOURCES = {"tiny": 1, "tiny-sharded": 2}
SCALE = 8.0  # weight matrices x8 (std 0.16): a random model's greedy tokens then vary


@dataclass
class Row:
    consumer: str
    model: str
    version: str
    compared: str
    result: str
    failed: bool  # counts against the exit status


def make_models(run: Path) -> dict[str, tuple[Path, Path]]:
    """Each source folder and its view, in one fresh store. A source folder has its view's
    name, so tools that name their output after the folder (llama.cpp) name both alike."""
    from safetensors.torch import load_file, save_file

    from tests.fixtures.tiny import write_tiny_model

    shutil.rmtree(run, ignore_errors=True)
    store = run / "store"
    made = {}
    for name, shards in SOURCES.items():
        source = run / "src" / name
        write_tiny_model(source, MODEL["model_type"], hidden_size=MODEL["hidden_size"], shards=shards,
                         num_layers=MODEL["num_layers"], vocab_size=MODEL["vocab_size"], seed=MODEL["seed"])
        for path in sorted(source.glob("*.safetensors")):
            tensors = {k: (v * SCALE if v.dim() == 2 else v) for k, v in load_file(path).items()}
            save_file(tensors, path, metadata={"format": "pt"})
        done = subprocess.run([sys.executable, str(REPO / "main.py"), "--root", str(store), "import-model",
                               str(source), "--name", name], cwd=REPO, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"import-model {name} failed:\n{done.stdout}{done.stderr}")
        made[name] = (source, store / "models" / name)
    return made


def llama_cpp_converter(python: Path) -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py`` (with its ``conversion/`` package and its own
    ``gguf-py``) from the ``llama-cpp-python`` sdist, downloaded once with the consumer's pip
    into ``out/src/``. The converter runs with the ``gguf-py`` it ships (its default): PyPI's
    ``gguf`` 0.19.0 lacks architectures the converter's modules name at import
    (``AttributeError: DFLASH``), so it only supplies ``gguf``'s dependencies."""
    src = OUT_DIR / "src"
    name = LLAMA_CPP_PYTHON.replace("-", "_").replace("==", "-")
    sdist = src / f"{name}.tar.gz"
    if not sdist.is_file():
        with (LOGS_DIR / "llamacpp-sdist.log").open("w") as log:
            subprocess.run([str(python), "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            LLAMA_CPP_PYTHON, "-d", str(src)], check=True, stdout=log, stderr=subprocess.STDOUT)
    converter = src / name / "vendor" / "llama.cpp"
    if not (converter / "gguf-py").is_dir():
        with tarfile.open(sdist) as tar:
            wanted = [m for m in tar.getmembers()
                      if m.name.startswith(f"{name}/vendor/llama.cpp/conversion/")
                      or m.name.startswith(f"{name}/vendor/llama.cpp/gguf-py/")
                      or m.name == f"{name}/vendor/llama.cpp/convert_hf_to_gguf.py"]
            tar.extractall(src, members=wanted, filter="data")
    return converter


def make_control(view: Path, dest: Path) -> Path:
    """The view in the earlier layout (tensor links under ``weights/``, the index naming them
    there), which vLLM and DCP's reader did not read (issue 22): a negative control, showing
    that those probes see a view they cannot read. Links are absolute, into the same blobs."""
    from registry.views import INDEX_FILENAME, tensor_relpath

    index = json.loads((view / INDEX_FILENAME).read_text())
    moved = {}
    for tensor, file in index["weight_map"].items():
        moved[file] = tensor_relpath(tensor, legacy=True)
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "weights").mkdir(parents=True)
    for entry in view.iterdir():
        if entry.name == INDEX_FILENAME:
            continue
        target = dest / moved.get(entry.name, entry.name)
        target.symlink_to(os.path.realpath(entry))
    index["weight_map"] = {tensor: moved[file] for tensor, file in index["weight_map"].items()}
    (dest / INDEX_FILENAME).write_text(json.dumps(index, indent=2))
    return dest


def run_probe(consumer: str, python: Path, source: Path, view: Path, model: str | None = None) -> Row:
    model = model or view.name
    work = OUT_DIR / "run" / consumer / model
    work.mkdir(parents=True, exist_ok=True)
    result = OUT_DIR / "results" / f"{consumer}-{model}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    cmd = [str(python), str(COMPAT_DIR / "probes" / f"probe_{consumer}.py"),
           "--view", str(view), "--source", str(source), "--work", str(work), "--out", str(result)]
    if consumer == "llamacpp":
        cmd += ["--converter", str(llama_cpp_converter(python))]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1",
               VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="nobind", VLLM_NO_USAGE_STATS="1",
               DO_NOT_TRACK="1")
    env.pop("PYTHONPATH", None)
    log = LOGS_DIR / f"{consumer}-{model}-probe.log"
    try:
        with log.open("w") as out:
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work,
                                  timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Row(consumer, model, "", "", f"FAILED: timed out after {PROBE_TIMEOUT_S} s (see {_rel(log)})", True)
    if done.returncode or not result.is_file():
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:] or [""]
        return Row(consumer, model, "", "", f"FAILED (exit {done.returncode}): {tail[0][:200]} (see {_rel(log)})", True)
    data = json.loads(result.read_text())
    diffs = data["differences"]
    diffs = [d.replace(f"{REPO}/", "") for d in diffs]  # repo paths, relative: the table is public
    verdict = "same" if not diffs else "**DIFFERENT**: " + "; ".join(diffs[:5]) + (" ..." if len(diffs) > 5 else "")
    if data.get("notes"):
        verdict += f" ({data['notes']})"
    return Row(consumer, model, data["version"], data["compared"], verdict, bool(diffs))


def control_row(consumer: str, python: Path, source: Path, view: Path) -> Row:
    """The probe on the earlier-layout view must find a difference; finding none fails."""
    control = make_control(view, OUT_DIR / "run" / "control" / CONTROL)
    row = run_probe(consumer, python, source, control, model=CONTROL)
    if row.result.startswith("FAILED"):
        return row
    if not row.failed:
        return Row(consumer, CONTROL, row.version, row.compared,
                   "FAILED: the probe found the earlier layout the same as the source (a blind probe)", True)
    found = row.result.removeprefix("**DIFFERENT**: ")
    return Row(consumer, CONTROL + " (control)", row.version, row.compared, f"fails as expected: {found}", False)


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def table(rows: list[Row]) -> str:
    lines = ["| consumer | model | version | compared (view vs source) | result |", "|---|---|---|---|---|"]
    for row in rows:
        cells = [row.consumer, row.model, row.version or "-", row.compared or "-", row.result]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    wanted = list(argv if argv is not None else sys.argv[1:]) or list(CONSUMERS)
    unknown = [c for c in wanted if c not in CONSUMERS]
    if unknown:
        print(f"unknown consumer(s) {unknown}; choose from {list(CONSUMERS)}", file=sys.stderr)
        return 2
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    models = make_models(OUT_DIR / "run")
    rows = []
    for consumer in wanted:
        print(f"[compat] {consumer}: venv", flush=True)
        env = venvs.ensure(consumer)
        if env.python is None:
            rows.append(Row(consumer, "all", "", "", f"not run: {env.reason}", False))
            continue
        for name, (source, view) in models.items():
            print(f"[compat] {consumer} {name}: probe", flush=True)
            try:
                rows.append(run_probe(consumer, env.python, source, view))
            except subprocess.CalledProcessError as exc:  # llama.cpp's sdist download
                rows.append(Row(consumer, name, "", "", f"not run: {' '.join(map(str, exc.cmd[2:5]))} failed", False))
            print(f"[compat] {consumer} {name}: {rows[-1].result}", flush=True)
        if consumer in CONTROL_CONSUMERS:
            rows.append(control_row(consumer, env.python, *models["tiny"]))
            print(f"[compat] {consumer} {CONTROL}: {rows[-1].result}", flush=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"modelstore views vs their source folders, {stamp}; torch 2.13.0 (CPU), Python "
            f"{sys.version.split()[0]}; model: tiny {MODEL['model_type']} (hidden {MODEL['hidden_size']}, "
            f"{MODEL['num_layers']} layers, head_dim 32, float32; `tiny`: a one-file source, "
            f"`tiny-sharded`: two shards and an index)\n\n{table(rows)}\n")
    (OUT_DIR / "results.md").write_text(text)
    print("\n" + text)
    return 1 if any(row.failed for row in rows) else 0
