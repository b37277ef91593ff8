"""Translating boto3/botocore errors into Steward errors, once per S3 request.

- endpoint / connection errors, timeouts, throttling and 5xx -> ``SourceUnavailable``
- ``NoSuchKey`` / 404 -> ``ObjectNotFound``; ``InvalidObjectState`` -> ``ObjectArchived``
- refused credentials (unknown key, wrong secret, expired token) -> ``AuthenticationFailed``;
  ``NoSuchBucket``, ``AccessDenied`` -> ``ConfigError`` naming the bucket and the setting to fix.
  Messages never include credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import botocore.exceptions as boto_errors

from steward.errors import (
    AuthenticationFailed,
    ConfigError,
    ObjectNotFound,
    ObjectStoreError,
    SourceUnavailable,
    StewardError,
)
from steward.storage.objects import archived_error

__all__ = ["UNSUPPORTED", "S3Errors", "TranslatedBody", "error_code", "error_status"]

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
UNSUPPORTED = frozenset({"NotImplemented", "NotImplementedError", "XNotImplemented"})


def error_code(exc: boto_errors.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_status(exc: boto_errors.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class S3Errors:
    """The error translation of :class:`~steward.storage.s3.S3Store` (a base class: it reads
    the store's bucket, prefix, URL and client)."""

    url: str
    bucket: str
    prefix: str
    _client: Any
    _bucket_checked: bool

    def _check_bucket(self) -> None:
        if self._bucket_checked:
            return
        with self._translated("checking", None):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except boto_errors.ClientError as exc:
                if error_status(exc) == 404:
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
        code, status = error_code(exc), error_status(exc)
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


class TranslatedBody:
    """A response body whose network errors surface as Steward errors."""

    def __init__(self, body: Any, store: S3Errors, key: str) -> None:
        self._body = body
        self._store = store
        self._key = key

    def read(self, n: int = -1) -> bytes:
        with self._store._translated("reading", self._key):
            return bytes(self._body.read(n if n is not None and n >= 0 else None))

    def close(self) -> None:
        self._body.close()
