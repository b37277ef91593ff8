"""S3 object store (AWS or any S3-compatible endpoint) through boto3.

Driver errors are translated once per request, by the :class:`~steward.storage.s3_errors.S3Errors`
base class (:mod:`steward.storage.s3_errors`).

Uploads are spooled to a temporary file while hashed (:mod:`steward.storage.s3_client`), then
sent in one PutObject carrying their SHA-256 (S3 refuses bytes that do not match it and returns
it: ``stored_sha256`` of the result), or above ``objects.multipart_threshold_mb`` with boto3's
managed multipart transfer; the SHA-256 also travels as user metadata.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import IO, Any, cast
from urllib.parse import urlsplit

import botocore.exceptions as boto_errors
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from steward.errors import (
    ConfigError,
    ObjectExists,
    ObjectNotFound,
)
from steward.settings import ObjectsSettings
from steward.storage.objects import (
    COLD_CLASSES,
    Clock,
    ObjectInfo,
    ObjectStore,
    RestoreState,
    VerifyingReader,
    archived_error,
    check_metadata,
    check_restore_request,
    check_storage_class,
    utcnow,
    validate_key,
    validate_prefix,
)
from steward.storage.s3_client import MIB, encryption_args, hashed_body, make_client
from steward.storage.s3_errors import (
    TranslatedBody,
    error_code,
    error_status,
)
from steward.storage.s3_lifecycle import S3Lifecycle

__all__ = ["S3Store"]

MAX_SINGLE_COPY = 5 * 1024 * MIB  # copy_object's limit; larger objects need a multipart copy

_RESTORE = re.compile(
    r'ongoing-request="(?P<ongoing>true|false)"(?:.*expiry-date="(?P<exp>[^"]+)")?'
)


def _hex_checksum(value: str | None) -> str:
    """S3's full-object SHA-256 (base64) as hex; "" for none or a multipart upload's
    checksum of part checksums (``…-N``)."""
    if not value or "-" in value:
        return ""
    try:
        return base64.b64decode(value).hex()
    except ValueError:
        return ""


class S3Store(S3Lifecycle, ObjectStore):
    """Objects under ``s3://bucket/prefix``. Keys are relative to the prefix."""

    list_page_size = 1000
    head_workers = 8

    def __init__(
        self,
        url: str,
        settings: ObjectsSettings,
        *,
        clock: Clock = utcnow,
        botocore_config: Config | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"objects.url = {url!r}: accepted s3://bucket/prefix")
        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/") + "/" if parts.path.strip("/") else ""
        self.settings = settings
        self._clock = clock
        self._sse = encryption_args(settings)
        self._client = make_client(settings, botocore_config)
        self._transfer = TransferConfig(
            multipart_threshold=settings.multipart_threshold_mb * MIB,
            multipart_chunksize=settings.multipart_chunk_mb * MIB,
            max_concurrency=4,
        )
        self._bucket_checked = False

    # Writing -------------------------------------------------------------------------------
    def put(
        self,
        key: str,
        data: bytes | IO[bytes],
        *,
        storage_class: str = "STANDARD",
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        full_key = self._full_key(key)
        check_storage_class(storage_class)
        user_metadata = check_metadata(key, metadata)
        with hashed_body(data) as (body, size, sha256):
            extra = {
                "Metadata": {**user_metadata, "sha256": sha256},
                "StorageClass": storage_class,
                "ChecksumAlgorithm": "SHA256",  # S3 checks the bytes it receives against it
                **self._sse,
            }
            with self._translated("writing", key):
                if size >= self._transfer.multipart_threshold:
                    self._client.upload_fileobj(
                        body, self.bucket, full_key, ExtraArgs=extra, Config=self._transfer
                    )
                    stored = ""  # a multipart upload's checksum is one of its parts
                else:
                    stored = self._put_object(full_key, body, sha256, extra)
        return ObjectInfo(
            key, size, sha256, storage_class, self._clock(), user_metadata, stored_sha256=stored
        )

    def _put_object(self, full_key: str, body: IO[bytes], sha256: str, extra: Any) -> str:
        """One PutObject carrying the SHA-256 of the body: S3 refuses the request unless the
        bytes it received match it (BadDigest), and returns it. The hex SHA-256 S3 returned ("" if
        none: a store that ignores checksums); boto3 need not hash the body again."""
        digest = base64.b64encode(bytes.fromhex(sha256)).decode()
        response = self._client.put_object(
            Bucket=self.bucket, Key=full_key, Body=body, ChecksumSHA256=digest, **extra
        )
        return _hex_checksum(response.get("ChecksumSHA256"))

    def put_if_absent(
        self, key: str, data: bytes, *, metadata: dict[str, str] | None = None
    ) -> ObjectInfo:
        """Create-only write: one PUT with ``If-None-Match: *`` (S3 refuses it with 412)."""
        full_key = self._full_key(key)
        user_metadata = check_metadata(key, metadata)
        sha256 = hashlib.sha256(data).hexdigest()
        with self._translated("writing", key):
            try:
                self._client.put_object(
                    Bucket=self.bucket, Key=full_key, Body=data, IfNoneMatch="*",
                    Metadata={**user_metadata, "sha256": sha256}, **self._sse,
                )  # fmt: skip
            except boto_errors.ClientError as exc:
                if error_code(exc) == "PreconditionFailed" or error_status(exc) == 412:
                    raise ObjectExists(
                        f"object {self._where(key)} already exists; it was kept as is"
                    ) from None
                raise
        return ObjectInfo(key, len(data), sha256, "STANDARD", self._clock(), user_metadata)

    def share_url(self, key: str, *, expires_seconds: int) -> tuple[str, str | None]:
        """A presigned HTTPS GET URL, served as HTML for ``.html`` keys; and its expiry."""
        params = {"Bucket": self.bucket, "Key": self._full_key(key)}
        if key.endswith(".html"):
            params["ResponseContentType"] = "text/html; charset=utf-8"
        with self._translated("signing a link to", key):
            url = self._client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_seconds
            )
        expires = self._clock() + timedelta(seconds=expires_seconds)
        return url, expires.isoformat(timespec="seconds")

    def delete(self, key: str) -> None:
        full_key = self._full_key(key)
        with self._translated("deleting", key):
            self._client.delete_object(Bucket=self.bucket, Key=full_key)

    def delete_many(self, keys: builtins.list[str]) -> None:
        """One DeleteObjects request per 1,000 keys; a key S3 could not delete raises."""
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            request = {"Objects": [{"Key": self._full_key(k)} for k in chunk], "Quiet": True}
            with self._translated("deleting", chunk[0]):
                response = self._client.delete_objects(Bucket=self.bucket, Delete=request)
            for error in response.get("Errors", []):  # the first refused key, translated
                refused = boto_errors.ClientError({"Error": error}, "DeleteObjects")
                key = str(error.get("Key", ""))[len(self.prefix) :]
                raise self._client_error(refused, "deleting", key)

    def copy(
        self,
        source: str,
        target: str,
        *,
        storage_class: str = "STANDARD",
        size: int | None = None,
    ) -> ObjectInfo:
        """A server-side copy: the bytes never leave S3; the ``sha256`` metadata goes along.
        S3 computes the copy's own SHA-256 (``stored_sha256`` of the result). With the
        source's ``size`` known (at most 5 GiB) no HEAD of the source is sent: the copy
        itself fails on a missing or cold source."""
        check_storage_class(storage_class)
        if size is not None and size <= MAX_SINGLE_COPY:
            return self._copy_object(source, target, storage_class, size)
        info = self.head(source)
        if not info.readable:
            raise archived_error(source, info.storage_class, info.restore)
        if info.size <= MAX_SINGLE_COPY:
            copied = self._copy_object(source, target, storage_class, info.size)
            return replace(copied, sha256=info.sha256, metadata=info.metadata)
        # A multipart copy does not carry metadata over: pass it explicitly.
        origin = {"Bucket": self.bucket, "Key": self._full_key(source)}
        extra = {
            "StorageClass": storage_class,
            "Metadata": {**info.metadata, "sha256": info.sha256},
            "MetadataDirective": "REPLACE",
            **self._sse,
        }
        with self._translated("copying", source):
            self._client.copy(
                origin, self.bucket, self._full_key(target), ExtraArgs=extra, Config=self._transfer
            )
        return ObjectInfo(
            target, info.size, info.sha256, storage_class, self._clock(), info.metadata
        )

    def _copy_object(self, source: str, target: str, storage_class: str, size: int) -> ObjectInfo:
        """One CopyObject request; S3 computes the SHA-256 of the copy and returns it. The
        result's ``sha256`` is that checksum (the ``sha256`` metadata is copied unread)."""
        origin = {"Bucket": self.bucket, "Key": self._full_key(source)}
        with self._translated("copying", source):
            response = self._client.copy_object(
                Bucket=self.bucket, Key=self._full_key(target), CopySource=origin,
                StorageClass=storage_class, MetadataDirective="COPY",
                ChecksumAlgorithm="SHA256", **self._sse,
            )  # fmt: skip
        stored = _hex_checksum(response.get("CopyObjectResult", {}).get("ChecksumSHA256"))
        return ObjectInfo(
            target, size, stored, storage_class, self._clock(), {}, stored_sha256=stored
        )

    def set_storage_class(self, key: str, storage_class: str) -> ObjectInfo:
        check_storage_class(storage_class)
        info = self.head(key)
        if info.storage_class == storage_class:
            return info
        if not info.readable:
            raise archived_error(key, info.storage_class, info.restore)
        source = {"Bucket": self.bucket, "Key": self._full_key(key)}
        with self._translated("changing the storage class of", key):
            if info.size <= MAX_SINGLE_COPY:
                self._client.copy_object(
                    Bucket=self.bucket,
                    Key=source["Key"],
                    CopySource=source,
                    StorageClass=storage_class,
                    MetadataDirective="COPY",
                    **self._sse,
                )
            else:  # multipart copy does not carry metadata over: pass it explicitly
                extra = {
                    "StorageClass": storage_class,
                    "Metadata": {**info.metadata, "sha256": info.sha256},
                    "MetadataDirective": "REPLACE",
                    **self._sse,
                }
                self._client.copy(
                    source, self.bucket, source["Key"], ExtraArgs=extra, Config=self._transfer
                )
        return self.head(key)

    def request_restore(self, key: str, *, days: int = 7, tier: str = "Standard") -> ObjectInfo:
        info = self.head(key)
        check_restore_request(key, info.storage_class, tier=tier, days=days)
        if info.storage_class not in COLD_CLASSES or info.restore == "pending":
            return info
        request = {"Days": days, "GlacierJobParameters": {"Tier": tier}}
        with self._translated("requesting a restore of", key):
            try:
                self._client.restore_object(
                    Bucket=self.bucket, Key=self._full_key(key), RestoreRequest=request
                )
            except boto_errors.ClientError as exc:
                if error_code(exc) != "RestoreAlreadyInProgress":  # already asked: not an error
                    raise
        return self.head(key)

    # Reading -------------------------------------------------------------------------------
    def open(self, key: str) -> VerifyingReader:
        full_key = self._full_key(key)
        with self._translated("reading", key):
            response = self._client.get_object(Bucket=self.bucket, Key=full_key)
        sha256 = response.get("Metadata", {}).get("sha256", "")
        body = cast(IO[bytes], TranslatedBody(response["Body"], self, key))
        return VerifyingReader(body, key=key, size=int(response["ContentLength"]), sha256=sha256)

    def head(self, key: str) -> ObjectInfo:
        full_key = self._full_key(key)
        try:
            with self._translated("inspecting", key):
                response = self._client.head_object(
                    Bucket=self.bucket, Key=full_key, ChecksumMode="ENABLED"
                )
        except ObjectNotFound:
            self._check_bucket()  # a HEAD on a missing bucket is a bare 404 too
            raise
        metadata = {k.lower(): v for k, v in response.get("Metadata", {}).items()}
        restore, expires = self._parse_restore(response.get("Restore"))
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            sha256=metadata.pop("sha256", ""),
            storage_class=response.get("StorageClass") or "STANDARD",
            last_modified=response["LastModified"],
            metadata=metadata,
            restore=restore,
            restore_expires=expires,
            stored_sha256=_hex_checksum(response.get("ChecksumSHA256")),
        )

    def list(self, prefix: str = "", *, details: bool = True) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        return self._iter_objects(prefix, details)

    def _iter_objects(self, prefix: str, details: bool) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self.prefix + prefix,
            PaginationConfig={"PageSize": self.list_page_size},
        )
        with (
            self._translated("listing", prefix or None),
            ThreadPoolExecutor(self.head_workers) as pool,
        ):
            for page in pages:
                found = [self._listed_info(item) for item in page.get("Contents", [])]
                listed = [info for info in found if info is not None]
                if details:
                    detailed = pool.map(self._head_or_none, [info.key for info in listed])
                    listed = [info for info in detailed if info is not None]
                yield from listed

    def _listed_info(self, item: dict[str, Any]) -> ObjectInfo | None:
        key = item["Key"][len(self.prefix) :]
        if not key or key.endswith("/"):  # folder markers made by consoles
            return None
        return ObjectInfo(
            key=key,
            size=int(item["Size"]),
            sha256="",
            storage_class=item.get("StorageClass") or "STANDARD",
            last_modified=item["LastModified"],
        )

    def _head_or_none(self, key: str) -> ObjectInfo | None:
        try:
            return self.head(key)
        except ObjectNotFound:  # deleted while we were listing
            return None

    # Keys -----------------------------------------------------------------------
    def _full_key(self, key: str) -> str:
        full_key = self.prefix + validate_key(key)
        if len(full_key.encode("utf-8")) > 1024:
            raise ConfigError(f"object key {key!r} plus prefix {self.prefix!r} exceeds 1024 bytes")
        return full_key

    def _parse_restore(self, header: str | None) -> tuple[RestoreState, datetime | None]:
        match = _RESTORE.search(header or "")
        if not match:
            return "none", None
        if match["ongoing"] == "true":
            return "pending", None
        expires = parsedate_to_datetime(match["exp"]) if match["exp"] else None
        if expires is not None and expires <= self._clock():
            return "none", None
        return "available", expires
