"""Streamed uploads of unknown length: multipart on moto S3 with the SHA-256 recorded, aborted
on failure (no object, no upload left behind); the folder store's atomic write; stale cleanup."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from steward.errors import ObjectNotFound
from steward.storage import abort_stale_uploads, open_object_store, put_stream, utcnow

MIB = 1024 * 1024


class Pipe:
    """A stream handing out short reads, like a pipe; fails after ``fail_after`` bytes."""

    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        self.data, self.pos, self.fail_after = data, 0, fail_after

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise OSError("the dump process died")
        n = min(n if n > 0 else len(self.data), 65536)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk


@pytest.fixture
def s3_store(make_settings, s3_url, moto_endpoint):
    settings = make_settings(objects__url=s3_url, objects__endpoint_url=moto_endpoint)
    return open_object_store(settings)


def _uploads(store) -> list:
    client = boto3.client("s3", endpoint_url=store.settings.endpoint_url, region_name="us-east-1")
    return client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])


def test_multipart_stream_records_size_and_sha256(s3_store):
    data = os.urandom(12 * MIB + 123)
    info = put_stream(s3_store, "backups/x/dump", Pipe(data), part_size_mb=5)
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    head = s3_store.head("backups/x/dump")
    assert head.sha256 == info.sha256 and head.size == len(data)
    assert s3_store.get_bytes("backups/x/dump") == data  # verified read
    assert _uploads(s3_store) == []


def test_an_empty_stream_is_an_empty_object(s3_store):
    info = put_stream(s3_store, "backups/x/empty", Pipe(b""), part_size_mb=5)
    assert info.size == 0 and s3_store.get_bytes("backups/x/empty") == b""


def test_a_failing_stream_leaves_no_object_and_no_upload(s3_store):
    with pytest.raises(OSError, match="dump process died"):
        put_stream(s3_store, "backups/x/dump", Pipe(os.urandom(11 * MIB), 6 * MIB), part_size_mb=5)
    with pytest.raises(ObjectNotFound):
        s3_store.head("backups/x/dump")
    assert _uploads(s3_store) == []


def test_stale_multipart_uploads_are_aborted(s3_store):
    client = s3_store._client
    client.create_multipart_upload(Bucket=s3_store.bucket, Key=s3_store.prefix + "backups/a/b")
    # (moto reports every upload as initiated in 2010, so "too recent to abort" is not testable)
    assert abort_stale_uploads(s3_store, "other/", older_than=utcnow() + timedelta(hours=1)) == 0
    assert abort_stale_uploads(s3_store, "backups/", older_than=utcnow() + timedelta(hours=1)) == 1
    assert _uploads(s3_store) == []


def test_folder_store_stream_and_stale_temporary_files(make_settings):
    store = open_object_store(make_settings())
    data = os.urandom(3 * MIB)
    info = put_stream(store, "backups/y/dump", Pipe(data))
    assert (
        store.get_bytes("backups/y/dump") == data
        and info.sha256 == hashlib.sha256(data).hexdigest()
    )
    with pytest.raises(OSError):
        put_stream(store, "backups/y/broken", Pipe(data, MIB))
    assert not store.exists("backups/y/broken")
    leftover = Path(store.root) / "backups/y/.steward-tmp-killed"
    leftover.write_bytes(b"partial")
    assert abort_stale_uploads(store, "backups", older_than=utcnow() + timedelta(hours=1)) == 1
    assert not leftover.exists()
