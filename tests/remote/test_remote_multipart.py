"""Large blobs against a real S3 server (weed mini): up as multipart uploads, down streamed,
verified both ways, with memory bounded by a few parts whatever the blob's size.

The part size (the multipart threshold too) comes from ``MODELSTORE_S3_PART_SIZE``, set here
to S3's 5 MiB floor (SeaweedFS enforces it) so the blobs stay small.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from store.errors import CorruptObjectError
from store.layout import Layout
from store.objects import ObjectStore
from store.remote.errors import RemoteIOError
from store.remote.objects import RemoteStore, object_key
from store.remote.s3 import MIN_PART_SIZE, PART_SIZE_ENV, S3Backend
from tests.remote.helpers import ROOT

PART = MIN_PART_SIZE


def _stores(tmp_path):
    made = []
    for label in ("a", "b"):
        layout = Layout(tmp_path / label)
        layout.create()
        made.append(ObjectStore(layout))
    return made


def _backend(s3_server, s3_url) -> S3Backend:
    return S3Backend("origin", s3_server[1], s3_url.rsplit("/", 1)[1], s3_server[0])


def test_large_blob_round_trips_as_multipart(tmp_path, s3_server, s3_url, monkeypatch):
    monkeypatch.setenv(PART_SIZE_ENV, str(PART))
    a, b = _stores(tmp_path)
    data = os.urandom(2 * PART + 12345)  # three parts, the last a short one
    put = a.put_bytes(data)
    backend = _backend(s3_server, s3_url)
    assert backend.part_size == PART
    remote = RemoteStore(backend)
    remote.upload(a, put.digest, put.size)
    info = backend.head(object_key(put.digest))
    assert info.size == len(data)
    assert info.etag.strip('"').endswith("-3")  # S3's etag of a three-part multipart upload
    remote.download(b, put.digest, put.size)
    assert b.rehash(put.digest) == put.digest
    assert b.read_bytes(put.digest) == data


def test_damaged_local_blob_never_completes_a_multipart_upload(tmp_path, s3_server, s3_url, monkeypatch):
    monkeypatch.setenv(PART_SIZE_ENV, str(PART))
    a, _ = _stores(tmp_path)
    put = a.put_bytes(os.urandom(3 * PART))
    path = a.path(put.digest)
    path.chmod(0o644)
    with open(path, "r+b") as f:  # flip a byte in the last part: the digest fails at the end
        f.seek(3 * PART - 10)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    backend = _backend(s3_server, s3_url)
    with pytest.raises(CorruptObjectError):
        RemoteStore(backend).upload(a, put.digest, put.size)
    assert backend.head(object_key(put.digest)) is None


def test_part_size_below_the_s3_floor_is_refused(monkeypatch):
    monkeypatch.setenv(PART_SIZE_ENV, str(PART - 1))
    with pytest.raises(RemoteIOError, match=PART_SIZE_ENV):
        S3Backend("origin", "bucket", "", "http://127.0.0.1:1")


def test_memory_stays_bounded_by_parts_not_blob(tmp_path, s3_env, s3_server):
    """Peak RSS growth of a fresh process while it uploads, then downloads, a 96 MiB blob stays
    under half the blob (measured: about 20-35 MiB with 5 MiB parts, the same for 512 MiB)."""
    size = 96 << 20
    env = {**os.environ, PART_SIZE_ENV: str(PART), "PROBE_ENDPOINT": s3_server[0],
           "PROBE_BUCKET": s3_server[1], "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tests.remote.rss_probe", str(tmp_path), str(size)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["round_trip"] and found["etag"].strip('"').endswith(f"-{-(-size // PART)}")
    for phase in ("upload", "download"):
        growth = found[f"{phase}_peak"] - found[f"{phase}_rss_before"]
        assert growth < size // 2, f"{phase} grew by {growth >> 20} MiB for a {size >> 20} MiB blob"
