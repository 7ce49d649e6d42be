"""An ``s3://bucket/prefix`` remote through obstore (any S3-compatible server).

Credentials and region come from the standard AWS environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``) or, when
those are unset, from the profile ``AWS_PROFILE`` (else ``default``) of
``~/.aws/credentials``; they are held in memory and never written anywhere.

Immutable objects go up with ``obstore.put`` in overwrite mode: a blob larger than one part
(8 MiB, or ``MODELSTORE_S3_PART_SIZE`` bytes, at least S3's 5 MiB floor) as a multipart upload
fed from an iterator of the file's chunks, completed atomically by the server, so memory
holds a few parts, never the blob; downloads stream in part-sized chunks. Refs with
``obstore.put(mode="create")`` (``If-None-Match: *``) and ``obstore.put(mode={"e_tag": ...})``
(``If-Match``), whose 412 answers obstore raises as ``AlreadyExistsError`` /
``PreconditionError``.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, NotFoundError, PreconditionError
from obstore.store import S3Store

from store.remote.backend import Backend, ObjectInfo, check_key
from store.remote.errors import (
    RefExistsError,
    RefMovedError,
    RemoteCorruptError,
    RemoteIOError,
    RemoteObjectMissingError,
)

PART_SIZE = 8 << 20  # the default part size, and the multipart threshold
MIN_PART_SIZE = 5 << 20  # S3 refuses smaller parts but the last (EntityTooSmall; SeaweedFS too)
PART_CONCURRENCY = 2  # parts in flight per blob: memory <= blobs in flight x 2 parts
PART_SIZE_ENV = "MODELSTORE_S3_PART_SIZE"


def part_size_from_env() -> int:
    """``MODELSTORE_S3_PART_SIZE`` (bytes) or the default: a knob for servers that want larger
    parts (AWS allows 10,000 parts per object) and for tests that want small multipart blobs."""
    raw = os.environ.get(PART_SIZE_ENV, "").strip()
    if not raw:
        return PART_SIZE
    if not raw.isdigit() or int(raw) < MIN_PART_SIZE:
        raise ValueError(f"{PART_SIZE_ENV}={raw!r} is not a byte count of at least {MIN_PART_SIZE} (5 MiB)")
    return int(raw)


def _profile_credentials() -> dict[str, str]:
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return {}
    path = Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except (OSError, configparser.Error):
        return {}
    section = os.environ.get("AWS_PROFILE") or "default"
    if not parser.has_section(section):
        return {}
    found = {"access_key_id": parser.get(section, "aws_access_key_id", fallback=None),
             "secret_access_key": parser.get(section, "aws_secret_access_key", fallback=None),
             "token": parser.get(section, "aws_session_token", fallback=None)}
    return {k: v for k, v in found.items() if v}


def _message(e: Exception) -> str:
    return str(e).split("\n", 1)[0][:300]


class S3Backend(Backend):
    def __init__(self, label: str, bucket: str, prefix: str, endpoint: str | None,
                 part_size: int | None = None):
        self.label = label
        try:
            self.part_size = part_size or part_size_from_env()
        except ValueError as e:
            raise RemoteIOError(label, "(configuration)", str(e)) from None
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        config: dict = dict(_profile_credentials())
        if endpoint:
            config["endpoint"] = endpoint
            config.setdefault("virtual_hosted_style_request", False)
        if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            config["region"] = "us-east-1"
        client = {"connect_timeout": timedelta(seconds=10), "timeout": timedelta(seconds=300)}
        if endpoint and endpoint.startswith("http://"):
            client["allow_http"] = True
        try:
            self.store = S3Store(bucket, prefix=prefix or None, client_options=client,
                                 retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=60)},
                                 **config)
        except (BaseError, ValueError) as e:
            raise RemoteIOError(label, "(configuration)", _message(e)) from None

    def _io(self, key: str, e: Exception) -> RemoteIOError:
        return RemoteIOError(self.label, key, _message(e))

    def head(self, key: str) -> ObjectInfo | None:
        try:
            meta = obstore.head(self.store, check_key(key))
        except (FileNotFoundError, NotFoundError):
            return None
        except (BaseError, OSError) as e:
            raise self._io(key, e) from None
        return ObjectInfo(key, meta["size"], meta.get("e_tag"), meta["last_modified"].timestamp())

    def get(self, key: str, limit: int) -> tuple[bytes, str | None] | None:
        try:
            result = obstore.get(self.store, check_key(key))
            if result.meta["size"] > limit:
                raise RemoteCorruptError(self.label, key, f"it is larger than {limit} bytes")
            data = bytes(result.bytes())
        except (FileNotFoundError, NotFoundError):
            return None
        except (BaseError, OSError) as e:
            raise self._io(key, e) from None
        if len(data) > limit:
            raise RemoteCorruptError(self.label, key, f"it is larger than {limit} bytes")
        return data, result.meta.get("e_tag")

    def download(self, key: str, sink: Callable[[memoryview | bytes], None], limit: int) -> int:
        total = 0
        try:
            result = obstore.get(self.store, check_key(key))
            if result.meta["size"] > limit:
                raise RemoteCorruptError(self.label, key, f"it is larger than {limit} bytes")
            for chunk in result.stream(min_chunk_size=self.part_size):
                total += len(chunk)
                if total > limit:
                    raise RemoteCorruptError(self.label, key, f"it is larger than {limit} bytes")
                sink(memoryview(chunk))
        except (FileNotFoundError, NotFoundError):
            raise RemoteObjectMissingError(self.label, key) from None
        except (BaseError, OSError) as e:
            raise self._io(key, e) from None
        return total

    def put(self, key: str, chunks: Iterable[bytes | memoryview], size: int) -> None:
        check_key(key)
        try:
            if size <= self.part_size:  # one part at most: one PutObject
                obstore.put(self.store, key, b"".join(bytes(c) for c in chunks), use_multipart=False)
            else:
                obstore.put(self.store, key, iter(chunks), use_multipart=True, chunk_size=self.part_size,
                            max_concurrency=PART_CONCURRENCY)
        except (BaseError, OSError) as e:
            raise self._io(key, e) from None

    def create(self, key: str, data: bytes) -> str | None:
        try:
            return obstore.put(self.store, check_key(key), data, mode="create")["e_tag"]
        except (AlreadyExistsError, PreconditionError):
            raise RefExistsError(self.label, key) from None
        except (BaseError, OSError) as e:
            raise self._io(key, e) from None

    def replace(self, key: str, data: bytes, etag: str) -> str | None:
        try:
            return obstore.put(self.store, check_key(key), data, mode={"e_tag": etag})["e_tag"]
        except (PreconditionError, FileNotFoundError, NotFoundError):
            raise RefMovedError(self.label, key) from None
        except (BaseError, OSError) as e:
            raise self._io(key, e) from None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        try:
            for batch in obstore.list(self.store, prefix=prefix, chunk_size=1000):
                for meta in batch:
                    key = meta["path"]
                    try:
                        check_key(key)
                    except ValueError:
                        continue
                    yield ObjectInfo(key, meta["size"], meta.get("e_tag"), meta["last_modified"].timestamp())
        except (BaseError, OSError) as e:
            raise self._io(prefix, e) from None

    def delete(self, key: str) -> None:
        try:
            obstore.delete(self.store, check_key(key))
        except (FileNotFoundError, NotFoundError):
            pass
        except (BaseError, OSError) as e:
            raise self._io(key, e) from None
