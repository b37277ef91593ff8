"""Building boto3 S3 clients and request bodies from ``[objects]`` settings.

Credentials come from the settings when both keys are set, else from boto3's chain; an upload
body is spooled (in memory up to ``SPOOL_IN_MEMORY``, then to a temporary file) while hashed.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import boto3
from botocore.config import Config

from steward.errors import ConfigError
from steward.settings import ObjectsSettings
from steward.storage.objects import iter_chunks

__all__ = ["MIB", "SPOOL_IN_MEMORY", "encryption_args", "hashed_body", "make_client"]

MIB = 1024 * 1024
SPOOL_IN_MEMORY = 8 * MIB  # uploads larger than this are spooled to a temporary file


@contextmanager
def hashed_body(data: bytes | IO[bytes]) -> Iterator[tuple[IO[bytes], int, str]]:
    """(readable body, size, sha256) of ``data``; streams are spooled, never held whole."""
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        yield io.BytesIO(raw), len(raw), hashlib.sha256(raw).hexdigest()
        return
    digest, size = hashlib.sha256(), 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        for chunk in iter_chunks(data):
            digest.update(chunk)
            size += len(chunk)
            spool.write(chunk)
        spool.seek(0)
        yield spool, size, digest.hexdigest()


def encryption_args(settings: ObjectsSettings) -> dict[str, str]:
    """Server-side encryption arguments of every write, checked for a consistent pair."""
    if settings.kms_key_id and settings.server_side_encryption != "aws:kms":
        raise ConfigError(
            "objects.kms_key_id is set but objects.server_side_encryption is "
            f"{settings.server_side_encryption!r}: set it to 'aws:kms' or unset kms_key_id"
        )
    args: dict[str, str] = {}
    if settings.server_side_encryption:
        args["ServerSideEncryption"] = settings.server_side_encryption
    if settings.kms_key_id:
        args["SSEKMSKeyId"] = settings.kms_key_id
    return args


def make_client(settings: ObjectsSettings, override: Config | None) -> Any:
    """A boto3 S3 client: explicit credentials when both are set, else boto3's chain."""
    access, secret = settings.access_key_id, settings.secret_access_key
    if (access is None) != (secret is None):
        raise ConfigError(
            "objects.access_key_id and objects.secret_access_key must be set together "
            "(or both left unset to use boto3's credential chain)"
        )
    config = Config(
        region_name=settings.region,
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"} if settings.endpoint_url else {},
    )
    if override is not None:
        config = config.merge(override)
    try:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint_url or None,
            region_name=settings.region,
            aws_access_key_id=access.get_secret_value() if access else None,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            config=config,
            verify=str(settings.ca_file) if settings.ca_file else None,
        )
    except ValueError as exc:
        raise ConfigError(
            f"objects.endpoint_url = {settings.endpoint_url!r} is not usable ({exc}); "
            "accepted: an http(s):// URL of an S3-compatible endpoint"
        ) from None
