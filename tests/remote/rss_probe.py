"""Peak memory of one blob's upload and download through the S3 backend, in a fresh process.

``python -m tests.remote.rss_probe WORKDIR SIZE_BYTES`` (endpoint, bucket and credentials from
the environment: ``PROBE_ENDPOINT``, ``PROBE_BUCKET``, ``AWS_*``) writes a blob of SIZE bytes
into a store under WORKDIR without holding it in memory, then prints one JSON line: the
resident set before each transfer and its high-water mark during it, in bytes.

A separate process because a pytest process's peak says nothing (earlier tests set it), and
RSS rather than ``tracemalloc`` because obstore's buffers are allocated in Rust, where
tracemalloc cannot see them. The high-water mark is reset between phases through
``/proc/self/clear_refs`` (Linux >= 4.0).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _write_blob(path: Path, size: int) -> None:
    """Random bytes, 1 MiB at a time (never the blob in memory)."""
    with open(path, "wb") as f:
        for i in range(0, size, 1 << 20):
            f.write(os.urandom(min(1 << 20, size - i)))


def main(workdir: Path, size: int) -> dict:
    from store.layout import Layout
    from store.objects import ObjectStore
    from store.remote.objects import RemoteStore
    from store.remote.s3 import S3Backend

    layout_a, layout_b = Layout(workdir / "a"), Layout(workdir / "b")
    for layout in (layout_a, layout_b):
        layout.create()
    source = workdir / "blob.bin"
    _write_blob(source, size)
    local = ObjectStore(layout_a)
    put = local.put_file(source)
    source.unlink()
    backend = S3Backend("probe", os.environ["PROBE_BUCKET"], f"rss-{os.getpid()}",
                        os.environ["PROBE_ENDPOINT"])
    remote = RemoteStore(backend)
    small = local.put_bytes(os.urandom(backend.part_size + 4096))  # warm the client: one multipart each way
    remote.upload(local, small.digest, small.size)
    remote.download(ObjectStore(layout_b), small.digest, small.size)

    found: dict = {"size": size, "part_size": backend.part_size}
    for phase, run in (("upload", lambda: remote.upload(local, put.digest, put.size)),
                       ("download", lambda: remote.download(ObjectStore(layout_b), put.digest, put.size))):
        found[f"{phase}_rss_before"] = _status("VmRSS")
        _reset_peak()
        run()
        found[f"{phase}_peak"] = _status("VmHWM")
    found["etag"] = backend.head(f"objects/{put.digest[:2]}/{put.digest[2:]}").etag
    found["round_trip"] = ObjectStore(layout_b).rehash(put.digest) == put.digest
    return found


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]))))
