"""S3 object store (AWS or any S3-compatible endpoint) through boto3.

Driver errors are translated here, once (:meth:`S3Store._translated`):

- endpoint / connection errors, timeouts, throttling and 5xx -> ``SourceUnavailable``
- ``NoSuchKey`` / 404 -> ``ObjectNotFound``; ``InvalidObjectState`` -> ``ObjectArchived``
- refused credentials (unknown key, wrong secret, expired token) -> ``AuthenticationFailed``;
  ``NoSuchBucket``, ``AccessDenied`` -> ``ConfigError`` naming the bucket and the setting to fix.
  Messages never include credentials.

Uploads are spooled to a temporary file while hashed (:mod:`steward.storage.s3_client`), then
sent with boto3's managed transfer (multipart above ``objects.multipart_threshold_mb``); the
SHA-256 travels as user metadata.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import IO, Any, cast
from urllib.parse import urlsplit

import botocore.exceptions as boto_errors
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from steward.errors import (
    AuthenticationFailed,
    ConfigError,
    ObjectExists,
    ObjectNotFound,
    ObjectStoreError,
    SourceUnavailable,
    StewardError,
)
from steward.settings import ObjectsSettings
from steward.storage.objects import (
    COLD_CLASSES,
    Clock,
    LifecycleRule,
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
from steward.storage.s3_lifecycle import merge_rules, rule_document, rules_from_documents

__all__ = ["S3Store"]

MAX_SINGLE_COPY = 5 * 1024 * MIB  # copy_object's limit; larger objects need a multipart copy

_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_ARCHIVED = frozenset({"InvalidObjectState", "ObjectNotInActiveTierError"})
# Refused credentials (the key is unknown, the secret wrong, a token expired): a retry won't help.
_BAD_CREDENTIALS = frozenset(
    "InvalidAccessKeyId SignatureDoesNotMatch InvalidToken ExpiredToken InvalidClientTokenId "
    "UnrecognizedClientException".split()
)
_DENIED = frozenset("AccessDenied AllAccessDisabled 403 Forbidden".split())
_UNAVAILABLE = frozenset(
    "SlowDown Throttling ThrottlingException RequestTimeout ServiceUnavailable InternalError "
    "503".split()
)
_UNSUPPORTED = frozenset({"NotImplemented", "NotImplementedError", "XNotImplemented"})
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


def _code(exc: boto_errors.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: boto_errors.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class S3Store(ObjectStore):
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
                self._client.upload_fileobj(
                    body, self.bucket, full_key, ExtraArgs=extra, Config=self._transfer
                )
        return ObjectInfo(key, size, sha256, storage_class, self._clock(), user_metadata)

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
                if _code(exc) == "PreconditionFailed" or _status(exc) == 412:
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
                if _code(exc) != "RestoreAlreadyInProgress":  # already asked: not an error
                    raise
        return self.head(key)

    # Reading -------------------------------------------------------------------------------
    def open(self, key: str) -> VerifyingReader:
        full_key = self._full_key(key)
        with self._translated("reading", key):
            response = self._client.get_object(Bucket=self.bucket, Key=full_key)
        sha256 = response.get("Metadata", {}).get("sha256", "")
        body = cast(IO[bytes], _TranslatedBody(response["Body"], self, key))
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

    # Lifecycle -----------------------------------------------------------------------------
    def put_lifecycle(self, rules: builtins.list[LifecycleRule]) -> bool:
        """Install ``rules`` as Steward's rules for this prefix; other rules are kept.

        Returns False when the store does not implement lifecycle configuration (or
        ``objects.lifecycle_supported`` is false): tiering must then move objects itself.
        """
        ours = [rule_document(rule, self.prefix) for rule in rules]
        if self.settings.lifecycle_supported is False:
            return False
        current = self._lifecycle_call("get_bucket_lifecycle_configuration")
        if current is None:
            return False
        merged = merge_rules(current.get("Rules", []), ours, self.prefix)
        if merged:
            done = self._lifecycle_call(
                "put_bucket_lifecycle_configuration", LifecycleConfiguration={"Rules": merged}
            )
        else:
            done = self._lifecycle_call("delete_bucket_lifecycle")
        return done is not None

    def get_lifecycle(self) -> builtins.list[LifecycleRule]:
        if self.settings.lifecycle_supported is False:
            return []
        current = self._lifecycle_call("get_bucket_lifecycle_configuration") or {}
        return rules_from_documents(current.get("Rules", []), self.prefix)

    def _lifecycle_call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        """The call's response; None when the store does not implement lifecycle rules."""
        with self._translated("configuring lifecycle rules of", None):
            try:
                return dict(getattr(self._client, method)(Bucket=self.bucket, **kwargs))
            except boto_errors.ClientError as exc:
                if _code(exc) in _UNSUPPORTED or _status(exc) == 501:
                    return None
                if _code(exc) == "NoSuchLifecycleConfiguration":
                    return {"Rules": []}
                raise

    # Keys and errors -----------------------------------------------------------------------
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

    def _check_bucket(self) -> None:
        if self._bucket_checked:
            return
        with self._translated("checking", None):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except boto_errors.ClientError as exc:
                if _status(exc) == 404:
                    raise self._missing_bucket() from None
                raise
        self._bucket_checked = True

    def _missing_bucket(self) -> ConfigError:
        return ConfigError(
            f"bucket {self.bucket!r} does not exist (objects.url = {self.url!r}): create it or "
            "point objects.url / STEWARD_OBJECTS__URL at an existing bucket"
        )

    @contextmanager
    def _translated(self, action: str, key: str | None) -> Iterator[None]:
        """Translate boto3/botocore errors raised inside into Steward errors, once."""
        try:
            yield
        except StewardError:
            raise
        except boto_errors.ClientError as exc:
            raise self._client_error(exc, action, key) from None
        except (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError):
            raise ConfigError(
                f"no usable S3 credentials for bucket {self.bucket!r}: set "
                "objects.access_key_id and objects.secret_access_key or configure boto3's chain "
                "(AWS_ACCESS_KEY_ID, profile, instance role)"
            ) from None
        except (
            boto_errors.ConnectionError,
            boto_errors.HTTPClientError,
            boto_errors.IncompleteReadError,
        ) as exc:
            raise SourceUnavailable(
                f"{action} {self._where(key)}: S3 endpoint unreachable ({type(exc).__name__}: "
                f"{exc}); check objects.endpoint_url and that the store is up"
            ) from None

    def _client_error(
        self, exc: boto_errors.ClientError, action: str, key: str | None
    ) -> StewardError:
        code, status = _code(exc), _status(exc)
        where = self._where(key)
        if code == "NoSuchBucket":
            return self._missing_bucket()
        if key is not None and (code in _NOT_FOUND or status == 404):
            return ObjectNotFound(f"no object {key!r} in {self.url}")
        if code in _ARCHIVED:
            return archived_error(key or "?", "a cold storage class (GLACIER/DEEP_ARCHIVE)", "none")
        if code in _BAD_CREDENTIALS:
            return AuthenticationFailed(
                f"{action} {where}: authentication failed ({code}); check "
                "objects.access_key_id / objects.secret_access_key (STEWARD_OBJECTS__ACCESS_KEY_ID"
                " / STEWARD_OBJECTS__SECRET_ACCESS_KEY, or boto3's credential chain)"
            )
        if code in _DENIED or status == 403:
            return ConfigError(
                f"{action} {where}: access denied ({code or status}); check "
                "objects.access_key_id / objects.secret_access_key (or boto3's credential "
                f"chain) and the policy of bucket {self.bucket!r}"
            )
        if code in _UNAVAILABLE or status >= 500 or status == 429:
            return SourceUnavailable(
                f"{action} {where}: S3 is unavailable or throttling ({code or status}); retry later"
            )
        message = exc.response.get("Error", {}).get("Message", "")
        return ObjectStoreError(f"{action} {where}: S3 answered {code or status} ({message})")

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}" if key else f"bucket {self.bucket!r}"


class _TranslatedBody:
    """A response body whose network errors surface as Steward errors."""

    def __init__(self, body: Any, store: S3Store, key: str) -> None:
        self._body = body
        self._store = store
        self._key = key

    def read(self, n: int = -1) -> bytes:
        with self._store._translated("reading", self._key):
            return bytes(self._body.read(n if n is not None and n >= 0 else None))

    def close(self) -> None:
        self._body.close()
