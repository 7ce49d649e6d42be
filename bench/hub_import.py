"""Issue 3's figure: Hub import of the 0.5B-shaped model vs a plain ``snapshot_download``.

The fake Hub (``tests/hub/server.py``) serves the ~1 GB, 290-tensor bf16 bench model on
127.0.0.1 (LFS redirect to a second "CDN" listener, as the Hub does). Both sides run as
whole processes pointed at it with ``HF_ENDPOINT``, each with a fresh, empty Hugging Face
cache and (for the import) a fresh store, alternating:

- ``snapshot_download``: huggingface_hub fetching the repo into its cache, nothing else;
- ``import-model``: ``python main.py import-model Qwen/Qwen2.5-0.5B --yes``: download with
  the weight file split into per-tensor blobs as it arrives (sha256 of the stream, BLAKE3 of
  each blob, every byte written once), publishing the blobs (fsync, rename) once the sha256
  matched, the load check (transformers loads the model and runs a forward pass) and
  registration.

Target: import at most 1.3x the download. The load check is part of the import, so it is
timed; ``import_phases_s`` splits one more import's wall time by step, from the moment each
status line arrives, to show where the time goes. The import shares the 2 cores of the dev
machine with its load-check worker, which imports torch and transformers (about 2.5 CPU-s)
while the weights download, and both hashes cost about 0.75 CPU-s more; so the download
phase takes longer than a plain ``snapshot_download``, and what follows the last byte (the
publishing of the blobs, overlapped with the load check, then registration) adds 0.5-0.8 s.

Two floors, timed in the same run. First, ``snapshot_download`` and the load-check worker
(``python -m registry.check.loadcheck qwen2``, which imports torch, transformers and the Qwen2 model
code) start side by side; once the download is done, the worker loads the downloaded folder
and runs the forward pass, exactly the check an import makes. Every import downloads the
same bytes through the same client and must load the model, from bytes that have all
arrived, before it registers it, so none can finish sooner than this on the same cores.
Second, the same with a third process beside them hashing the weight file once with sha256
(which the issue requires, and huggingface_hub does not do) and once with BLAKE3 (which
names every blob), from its cached pages: what the import cannot avoid either, minus the
cost of writing 290 blob files and a view instead of one file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from bench.common import OUT, REPO, alternate, bench_model, compile_project, floor_times, fresh, report

REPO_ID = "Qwen/Qwen2.5-0.5B"
SNAPSHOT = ("import sys; from huggingface_hub import snapshot_download; "
            "print(snapshot_download(sys.argv[1], cache_dir=sys.argv[2]))")
# The two hashes an import must take of every weight byte (the Hub's sha256, the blobs'
# BLAKE3, one thread each as the import takes them), from the served file's cached pages.
HASHES = ("import hashlib, mmap, sys, blake3\n"
          "with open(sys.argv[1], 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:\n"
          "    hashlib.sha256(m).digest(); blake3.blake3(m).digest()")


def main(rounds: int = 5) -> dict:
    sys.path.insert(0, str(REPO))
    from tests.hub.server import HubServer

    source = bench_model()
    compile_project()
    work = OUT / "hub_import"
    store, cache_a, cache_b = work / "store", work / "hf-import", work / "hf-snapshot"
    with HubServer() as hub:
        hub.add_repo(REPO_ID, source, card_license="apache-2.0")
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0", "NO_PROXY": "127.0.0.1"}
        env.pop("HF_TOKEN", None)
        snapshot = [sys.executable, "-c", SNAPSHOT, REPO_ID, str(cache_b / "hub")]
        import_cmd = [sys.executable, "main.py", "--root", str(store), "import-model", REPO_ID, "--yes"]

        def run(cmd: list[str], hf_home) -> None:
            subprocess.run(cmd, cwd=REPO, env={**env, "HF_HOME": str(hf_home)}, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def clean() -> None:
            fresh(store), fresh(cache_a), fresh(cache_b)
            os.sync()  # neither side inherits the other's dirty pages (the import fsyncs its blobs)

        after: dict = {}
        times = alternate(rounds, {
            "snapshot_download": lambda: run(snapshot, cache_b),
            "import-model": lambda: run(import_cmd, cache_a),
        }, before_each=clean, after=after)
        floor_env = {**env, "HF_HOME": str(cache_b)}
        floor = floor_times(rounds, clean, lambda: _download_then_load([snapshot], floor_env))
        hashes = [sys.executable, "-c", HASHES, str(source / "model.safetensors")]
        floor_hashed = floor_times(rounds, clean, lambda: _download_then_load([snapshot, hashes], floor_env))
        clean()
        phases = _phases(import_cmd, {**env, "HF_HOME": str(cache_a)})
    clean()
    return report("hub-import", times, "snapshot_download", "import <= 1.3x snapshot_download",
                  floors={"snapshot_download, then the load check": floor,
                          "the same, beside sha256 and BLAKE3 of the bytes": floor_hashed},
                  after=after, import_phases_s=phases)


def _download_then_load(beside: list[list[str]], env: dict) -> None:
    """``snapshot_download`` (the first of ``beside``) and the other commands beside a starting
    load-check worker, then the load check of the downloaded folder in that worker: the least
    an import must do after its first byte."""
    worker = subprocess.Popen([sys.executable, "-m", "registry.check.loadcheck", "qwen2"], cwd=REPO, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        procs = [subprocess.Popen(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE) for cmd in beside]
        outputs = [proc.communicate()[0] for proc in procs]
        if any(proc.returncode for proc in procs):
            raise RuntimeError(f"a floor command failed: exit codes {[proc.returncode for proc in procs]}")
        worker.stdin.write(json.dumps({"folder": outputs[0].strip(), "model_id": REPO_ID,
                                       "model_type": "qwen2"}) + "\n")
        worker.stdin.flush()
        reply = json.loads(worker.stdout.readline() or "{}")
    finally:
        worker.stdin.close()
        worker.wait()
    if not reply.get("ok"):
        raise RuntimeError(f"the floor's load check failed: {reply}")


def _phases(cmd: list[str], env: dict) -> dict[str, float]:
    """One more import, its wall time split by step, from when each status line arrives."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    marks: list[tuple[float, str]] = [(time.perf_counter() - start, line.strip()) for line in proc.stderr]
    if proc.wait() != 0:
        raise RuntimeError("import-model failed:\n" + "\n".join(line for _, line in marks))
    total = time.perf_counter() - start

    def at(prefix: str, last: bool = False) -> float:
        found = [t for t, line in marks if line.startswith(prefix)]
        return found[-1] if last else found[0]

    listed, planned = at("hub "), at("files ")
    split = at("weights ", last=True)
    loading, loaded = at("verify     loading"), at("verify ", last=True)
    return {
        "start, listing, config": round(listed, 2),
        "license, plan": round(planned - listed, 2),
        "download, sha256, split": round(split - planned, 2),
        "other files, verify blobs": round(loading - split, 2),
        "load check": round(loaded - loading, 2),
        "manifest, register, exit": round(total - loaded, 2),
        "total": round(total, 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    main(parser.parse_args().rounds)
