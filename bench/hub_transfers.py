"""Issue 23's figures: Hub import through a far CDN (parallel ranges) vs ``snapshot_download``.

The fake Hub (``tests/hub/server.py``) in CDN mode: every connection sends at most 40 MB/s
and every response waits 30 ms. In one run, alternating:

- the 1 GB one-file bench model: ``import-model`` (8 connections in 32 MB ranges, the sha256
  and the tensor split as the prefix grows, load check, registration) against
  ``snapshot_download`` (one connection per file); target at most 0.4x;
- the same tensors in 4 shards (``bench_model(shards=4)``): target at most 1.0x
  (``snapshot_download`` fetches the 4 files at once, one connection each);
- resume: an import of the one-file model is killed (SIGKILL of its process group) once the
  server sent half the weight bytes; the re-run must fetch at most 60% of them.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from bench.common import OUT, REPO, alternate, bench_model, compile_project, fresh, report

REPO_ID = "Qwen/Qwen2.5-0.5B"
SHARDED_ID = "Qwen/Qwen2.5-0.5B-4shards"
SNAPSHOT = ("import sys; from huggingface_hub import snapshot_download; "
            "print(snapshot_download(sys.argv[1], cache_dir=sys.argv[2]))")
RATE = 40e6  # bytes/s per connection
DELAY = 0.03  # seconds per response


def main(rounds: int = 2) -> dict:
    sys.path.insert(0, str(REPO))
    from tests.hub.server import HubServer

    one, four = bench_model(), bench_model(shards=4)
    compile_project()
    work = OUT / "hub_transfers"
    store, cache_a, cache_b = work / "store", work / "hf-import", work / "hf-snapshot"
    with HubServer() as hub:
        hub.add_repo(REPO_ID, one, card_license="apache-2.0")
        hub.add_repo(SHARDED_ID, four, card_license="apache-2.0")
        hub.cdn_mode(RATE, DELAY)
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0", "NO_PROXY": "127.0.0.1"}
        env.pop("HF_TOKEN", None)

        def run(cmd: list[str], hf_home) -> None:
            subprocess.run(cmd, cwd=REPO, env={**env, "HF_HOME": str(hf_home)}, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def clean() -> None:
            fresh(store), fresh(cache_a), fresh(cache_b)
            os.sync()

        def contenders(repo_id: str) -> dict:
            return {
                "snapshot_download": lambda: run([sys.executable, "-c", SNAPSHOT, repo_id, str(cache_b / "hub")],
                                                 cache_b),
                "import-model": lambda: run([sys.executable, "main.py", "--root", str(store), "import-model",
                                             repo_id, "--yes"], cache_a),
            }

        one_file = alternate(rounds, contenders(REPO_ID), before_each=clean)
        shards = alternate(rounds, contenders(SHARDED_ID), before_each=clean)
        clean()
        resume = _kill_at_half(hub, env, store, cache_a, sum(p.stat().st_size for p in one.glob("*.safetensors")))
    clean()
    result_one = report("hub-transfers-one-file", one_file, "snapshot_download",
                        "import <= 0.4x snapshot_download (40 MB/s per connection, 30 ms per response)",
                        resume_after_kill_at_half=resume)
    result_four = report("hub-transfers-4-shards", shards, "snapshot_download",
                         "import <= 1.0x snapshot_download (40 MB/s per connection, 30 ms per response)")
    return {"one_file": result_one, "four_shards": result_four}


def _kill_at_half(hub, env: dict, store, hf_home, weights: int) -> dict:
    cmd = [sys.executable, "main.py", "--root", str(store), "import-model", REPO_ID, "--yes"]
    full_env = {**env, "HF_HOME": str(hf_home)}
    start = hub.body_bytes
    proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while hub.body_bytes - start < weights / 2 and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    hub.wait_idle(10)
    first = hub.body_bytes - start
    before = hub.body_bytes
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=full_env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rerun = hub.body_bytes - before
    return {"weight_bytes": weights, "sent_before_kill": first, "rerun_fetched": rerun,
            "rerun_fraction_of_weights": round(rerun / weights, 3),
            "rerun_s": round(time.perf_counter() - t0, 2), "target": "rerun fetches <= 60% of the weight bytes"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    main(parser.parse_args().rounds)
