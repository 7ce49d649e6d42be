"""Issue 17's figures: push and pull of the 1 GB model through a loopback S3 server.

SeaweedFS (``weed mini``, started here on loopback with free ports by ``tests/remote/seaweed.py``)
serves the S3 API; the Qwen2.5-0.5B-shaped bf16 model (~1 GB, 290 tensors) is imported into
a store first. Every contender runs **in this process** as a library call (our ``push`` /
``pull``, and the baselines' obstore calls), so neither side pays an interpreter's start:

a. push into an empty prefix vs uploading the same objects (every blob and the manifest)
   with obstore directly: ``obstore.put`` of each object file from its path, with the
   concurrency and order the push uses (4 objects at once, largest first, each above one
   part as a multipart upload in 8 MiB parts, 2 parts in flight); target at most 1.2x;
b. re-push of the unchanged model (every object already there) vs the first push; target
   at most 0.05x;
c. pull into an empty store vs downloading the same objects with obstore directly
   (``obstore.get(...).stream()`` into one file per object, same concurrency, order and
   chunk size); target at most 1.2x. Our pull also hashes every byte and fsyncs every blob
   before it enters the store (DESIGN: published like a local write); "obstore get + fsync"
   is the like-for-like durable download, and the writeback of the same bytes timed alone
   (``sync`` after an untimed download) is a floor no durable pull can go under;
d. pull of a fine-tune whose base is present: a fine-tune with the embeddings and the
   first 16 of the 24 layers frozen (every other tensor new bytes), pushed, then pulled
   into a store that holds the base; the bytes the remote sent (counted at the backend:
   ref, manifests, blobs) against the base's bytes; target at most 30%.

The CPU seconds of this process and of the server are recorded per contender (``cpu_s``):
SeaweedFS on the same cores spends about 9 CPU-s per GB it receives, which sets the push's
pace on a 2-core machine whoever the client is.

Usage::

    python -m bench.remote [--rounds 3]
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import obstore

from bench.common import OUT, alternate, bench_model, floor_times, fresh, report, warm
from registry.remote.config import Remote, RemoteConfig
from registry.remote.pull import JOBS as PULL_JOBS
from registry.remote.pull import pull
from registry.remote.push import JOBS as PUSH_JOBS
from registry.remote.push import push
from store.remote.objects import largest_first, object_key
from store.remote.s3 import PART_CONCURRENCY, part_size_from_env
from tests.remote.seaweed import ACCESS_KEY, SECRET_KEY, client, weed_mini

FREEZE = ["model.embed_tokens.*"] + [f"model.layers.{i}.*" for i in range(16)]  # as bench.checkpoint


class CPU:
    """CPU seconds of this process (client: our code or obstore's) and of the server, per
    contender and run: on a small machine the server's share decides most of a transfer's
    time, and this says whose CPU a ratio is made of."""

    def __init__(self, server_pid: int):
        self.pid, self.seen = server_pid, {}

    def server(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def wrap(self, name: str, fn):
        def run():
            t0, s0 = os.times(), self.server()
            fn()
            t1, s1 = os.times(), self.server()
            self.seen.setdefault(name, []).append((t1.user + t1.system - t0.user - t0.system, s1 - s0))
        return run

    def medians(self) -> dict:
        return {k: {"client": round(statistics.median(c for c, _ in v), 2),
                    "server": round(statistics.median(s for _, s in v), 2)} for k, v in self.seen.items()}


class Counting:
    """A backend wrapper that counts the bytes the remote sent (whole gets and streams)."""

    def __init__(self, inner):
        self.inner, self.label, self.received = inner, inner.label, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def get(self, key, limit):
        got = self.inner.get(key, limit)
        self.received += len(got[0]) if got else 0
        return got

    def download(self, key, sink, limit):
        got = self.inner.download(key, sink, limit)
        self.received += got
        return got


def machine() -> str:
    """CPUs and ``uptime`` (its load average) when a figure is reported: the server, the
    client and whatever else runs share these cores."""
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} CPUs; {uptime}"


def fine_tune(ws, base: str, name: str) -> tuple[int, int]:
    """Register ``name``: ``base`` with every tensor outside FREEZE replaced by new bytes (what
    a checkpoint of that training run stores); (changed tensor bytes, all tensor bytes)."""
    import msgspec

    from registry.ops import register
    from store.manifest import TensorEntry, now_iso

    entry = ws.read_registry().models[base]
    manifest = ws.manifest(entry.manifest)
    tensors, changed = dict(manifest.tensors), 0
    for tname, t in sorted(manifest.tensors.items()):
        if any(fnmatch.fnmatchcase(tname, p) for p in FREEZE):
            continue
        put = ws.objects.put_tensor(tname, t.dtype, t.shape, os.urandom(t.nbytes))
        tensors[tname] = TensorEntry(digest=put.digest, dtype=t.dtype, shape=t.shape, nbytes=t.nbytes)
        changed += t.nbytes
    child = msgspec.structs.replace(manifest, tensors=tensors, parents=[entry.manifest], source="finetuned",
                                    created_at=now_iso(), origin=None)
    register(ws, name, None, child, fine_tuned_from=base)
    return changed, manifest.tensor_bytes


def upload_direct(store, objects: list[tuple[str, int, Path]], prefix: str, part: int) -> None:
    """The baseline: each object file up with ``obstore.put`` from its path (obstore reads it)."""
    def one(item):
        digest, size, path = item
        obstore.put(store, f"{prefix}/{object_key(digest)}", path, use_multipart=size > part,
                    chunk_size=part, max_concurrency=PART_CONCURRENCY)

    with ThreadPoolExecutor(PUSH_JOBS) as pool:
        list(pool.map(one, objects))


def download_direct(store, objects: list[tuple[str, int, Path]], prefix: str, dest: Path, part: int,
                    durable: bool) -> None:
    """The baseline: each object streamed into its own file; with ``durable``, fsync'd."""
    def one(item):
        digest, _, _ = item
        with open(dest / digest, "wb") as f:
            for chunk in obstore.get(store, f"{prefix}/{object_key(digest)}").stream(min_chunk_size=part):
                f.write(chunk)
            if durable:
                f.flush()
                os.fsync(f.fileno())

    with ThreadPoolExecutor(PULL_JOBS) as pool:
        list(pool.map(one, objects))


def main(rounds: int = 3) -> list[dict]:
    from registry.ingest.folder import import_folder
    from registry.workspace import Workspace

    source = bench_model()
    warm(source)
    work = fresh(OUT / "remote")
    os.environ.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    for var in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(var, None)
    part = part_size_from_env()
    ws = Workspace.open(work / "a")
    imported = import_folder(ws, source, name="qwen")
    digest = imported.manifest_digest
    sizes = {**imported.manifest.expected_sizes(), digest: ws.objects.size(digest)}
    objects = [(d, s, ws.objects.path(d)) for d, s in largest_first(list(sizes.items()))]  # as push/pull
    total = sum(sizes.values())
    results = []
    with weed_mini(work / "weed") as server:
        endpoint, bucket = server.endpoint, server.bucket
        store = client(endpoint, retry_config={"max_retries": 3})
        cpu = CPU(server.pid)
        counter = iter(range(10_000))

        def remote(prefix: str) -> Remote:
            return Remote("bench", RemoteConfig(url=f"s3://{bucket}/{prefix}", endpoint_url=endpoint))

        # (a) push into an empty prefix vs obstore uploads of the same objects
        pushed: list[str] = []

        def do_push():
            pushed.append(f"push-{next(counter)}")
            push(ws, remote(pushed[-1]), "qwen")

        times = alternate(rounds, {
            "obstore put (same objects)": cpu.wrap("obstore put", lambda: upload_direct(
                store, objects, f"direct-{next(counter)}", part)),
            "push (empty remote)": cpu.wrap("push", do_push),
        })
        results.append(report("remote-push", times, "obstore put (same objects)", "push <= 1.2x obstore put",
                              objects=len(objects), bytes=total, part_size=part, jobs=PUSH_JOBS,
                              machine=machine(), mode="in-process library calls, both sides",
                              cpu_s=cpu.medians()))

        # (b) re-push of the unchanged model vs the first push (times from (a), same run)
        again = {"push (empty remote)": times["push (empty remote)"], "re-push (unchanged)": []}
        for _ in range(rounds):
            start = time.perf_counter()
            sent = push(ws, remote(pushed[-1]), "qwen")
            again["re-push (unchanged)"].append(time.perf_counter() - start)
            assert sent.objects_sent == 0 and sent.ref == "unchanged", sent
        results.append(report("remote-repush", again, "push (empty remote)", "re-push <= 0.05x first push",
                              machine=machine(), note="one HEAD per object (4 at once), the ref read"))

        # (c) pull into an empty store vs obstore downloads of the same objects
        cpu = CPU(server.pid)
        direct = work / "direct"
        src = remote(pushed[-1])
        times = alternate(rounds, {
            "obstore get (same objects)": cpu.wrap("obstore get", lambda: download_direct(
                store, objects, pushed[-1], direct, part, False)),
            "obstore get + fsync": cpu.wrap("obstore get + fsync", lambda: download_direct(
                store, objects, pushed[-1], direct, part, True)),
            "pull (empty store)": cpu.wrap("pull", lambda: pull(Workspace.open(work / "b"), src, "qwen")),
        }, before_each=lambda: (fresh(direct).mkdir(), fresh(work / "b")))
        # The floor of any durable pull: writing the same bytes back to the disk, timed alone (the
        # sync after an untimed download), however well it overlaps with the transfer.
        writeback = floor_times(rounds, lambda: (fresh(direct).mkdir(), download_direct(
            store, objects, pushed[-1], direct, part, False)), os.sync)
        results.append(report("remote-pull", times, "obstore get (same objects)", "pull <= 1.2x obstore get",
                              floors={"writeback of the download (sync after obstore get)": writeback},
                              objects=len(objects), bytes=total, machine=machine(),
                              mode="in-process library calls, both sides", cpu_s=cpu.medians(),
                              note="pull hashes every byte and fsyncs every blob; 'obstore get + fsync' "
                                   "is the durable download"))

        # (d) a fine-tune pulled where its base is present
        changed, tensor_bytes = fine_tune(ws, "qwen", "qwen-ft")
        push(ws, src, "qwen-ft")
        times = {"pull (empty store)": times["pull (empty store)"], "pull fine-tune (base present)": []}
        moved = []
        for i in range(rounds):
            fresh(work / "b")
            b = Workspace.open(work / "b")
            pull(b, src, "qwen")
            counted = Remote("bench", src.config, Counting(src.store.backend))
            os.sync()
            start = time.perf_counter()
            got = pull(b, counted, "qwen-ft")
            times["pull fine-tune (base present)"].append(time.perf_counter() - start)
            moved.append(counted.store.backend.received)
        results.append(report("remote-pull-finetune", times, "pull (empty store)",
                              "bytes moved <= 30% of the base's bytes",
                              base_bytes=total, changed_tensor_bytes=changed,
                              changed_fraction=round(changed / tensor_bytes, 4),
                              bytes_moved=moved[-1], moved_fraction=round(moved[-1] / total, 4),
                              blobs_fetched=got.objects_fetched, machine=machine()))
    fresh(work)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)
