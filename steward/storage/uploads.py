"""Streaming uploads of unknown length (a pipe from pg_dump), and cleaning up killed ones.

S3: a multipart upload fed part by part from the stream (one part in memory at a time), the
SHA-256 computed on the way and then set as the object's ``sha256`` metadata by a copy onto
itself; any failure aborts the upload, so no partial object ever becomes visible. Folder: the
store's own atomic write (temporary file in place, then rename). A writer killed outright
leaves an incomplete multipart upload (S3) or a temporary file (folder), never a listed object;
:func:`abort_stale_uploads` removes those.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from steward.storage.folder import TMP_PREFIX, FolderStore
from steward.storage.objects import ObjectInfo, ObjectStore, check_metadata, check_storage_class
from steward.storage.s3 import MAX_SINGLE_COPY, S3Store
from steward.storage.s3_client import MIB

__all__ = ["abort_stale_uploads", "put_stream"]


def put_stream(
    store: ObjectStore,
    key: str,
    stream: IO[bytes],
    *,
    part_size_mb: int = 16,
    storage_class: str = "STANDARD",
    metadata: dict[str, str] | None = None,
) -> ObjectInfo:
    """Write ``stream`` to ``key`` without holding it whole in memory or spooling it locally."""
    if isinstance(store, S3Store):
        return _put_s3(store, key, stream, part_size_mb * MIB, storage_class, metadata or {})
    return store.put(key, stream, storage_class=storage_class, metadata=metadata)


def _read_part(stream: IO[bytes], size: int) -> bytes:
    # A pipe hands out short reads: gather a whole part (S3 wants >= 5 MiB but the last).
    pieces, have = [], 0
    while have < size:
        piece = stream.read(min(size - have, MIB))
        if not piece:
            break
        pieces.append(piece)
        have += len(piece)
    return b"".join(pieces)


def _put_s3(
    store: S3Store,
    key: str,
    stream: IO[bytes],
    part_size: int,
    storage_class: str,
    metadata: dict[str, str],
) -> ObjectInfo:
    full_key = store._full_key(key)
    check_storage_class(storage_class)
    user = check_metadata(key, metadata)
    client = store._client
    target = {"Bucket": store.bucket, "Key": full_key}
    with store._translated("writing", key):
        upload_id = client.create_multipart_upload(
            **target, StorageClass=storage_class, Metadata=user, **store._sse
        )["UploadId"]
    try:
        size, sha256 = _send_parts(store, key, stream, part_size, upload_id)
    except BaseException:
        with contextlib.suppress(Exception):
            client.abort_multipart_upload(**target, UploadId=upload_id)
        raise
    _record_sha256(store, key, full_key, size, {**user, "sha256": sha256}, storage_class)
    return ObjectInfo(key, size, sha256, storage_class, store._clock(), user)


def _send_parts(
    store: S3Store, key: str, stream: IO[bytes], part_size: int, upload_id: str
) -> tuple[int, str]:
    client, target = store._client, {"Bucket": store.bucket, "Key": store._full_key(key)}
    digest, size = hashlib.sha256(), 0
    parts: list[dict[str, Any]] = []
    while True:
        part = _read_part(stream, part_size)
        if not part and parts:
            break
        digest.update(part)
        size += len(part)
        with store._translated("writing", key):
            etag = client.upload_part(
                **target, UploadId=upload_id, PartNumber=len(parts) + 1, Body=part
            )["ETag"]
        parts.append({"PartNumber": len(parts) + 1, "ETag": etag})
        if not part:
            break
    with store._translated("writing", key):
        client.complete_multipart_upload(
            **target, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    return size, digest.hexdigest()


def _record_sha256(
    store: S3Store,
    key: str,
    full_key: str,
    size: int,
    metadata: dict[str, str],
    storage_class: str,
) -> None:
    # The checksum is known only at the end; S3 sets metadata at creation: copy onto itself.
    source = {"Bucket": store.bucket, "Key": full_key}
    extra: dict[str, Any] = {
        "Metadata": metadata,
        "MetadataDirective": "REPLACE",
        "StorageClass": storage_class,
        **store._sse,
    }
    with store._translated("recording the checksum of", key):
        if size <= MAX_SINGLE_COPY:
            store._client.copy_object(**source, CopySource=source, **extra)
        else:
            store._client.copy(source, store.bucket, full_key, ExtraArgs=extra)


def abort_stale_uploads(store: ObjectStore, prefix: str, *, older_than: datetime) -> int:
    """Remove uploads under ``prefix`` a killed writer left before ``older_than``; their count."""
    if isinstance(store, S3Store):
        return _abort_s3_uploads(store, prefix, older_than)
    if isinstance(store, FolderStore):
        return _remove_temporary_files(store.root / prefix, older_than)
    return 0


def _abort_s3_uploads(store: S3Store, prefix: str, older_than: datetime) -> int:
    aborted = 0
    paginator = store._client.get_paginator("list_multipart_uploads")
    with store._translated("cleaning up uploads under", prefix):
        for page in paginator.paginate(Bucket=store.bucket, Prefix=store.prefix + prefix):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < older_than:
                    store._client.abort_multipart_upload(
                        Bucket=store.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
    return aborted


def _remove_temporary_files(folder: Path, older_than: datetime) -> int:
    removed = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(dirpath) / name
            if name.startswith(TMP_PREFIX) and path.stat().st_mtime < older_than.timestamp():
                path.unlink(missing_ok=True)
                removed += 1
    return removed
