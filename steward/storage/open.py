"""Build the object store that settings name: a folder (``file://``) or S3 (``s3://``).

Kept apart from ``objects`` so neither store module imports the module that builds it.
"""

from __future__ import annotations

from steward.errors import ConfigError
from steward.settings import Settings
from steward.storage.folder import FolderStore
from steward.storage.objects import Clock, ObjectStore, utcnow

__all__ = ["open_object_store"]


def open_object_store(settings: Settings, *, clock: Clock = utcnow) -> ObjectStore:
    """The store configured by ``objects.url`` (a folder under home by default)."""
    url = settings.objects_url
    if url.startswith("file://"):
        return FolderStore(url, clock=clock)
    if url.startswith("s3://"):
        from steward.storage.s3 import S3Store  # boto3 is imported only for an S3 store

        return S3Store(url, settings.objects, clock=clock)
    raise ConfigError(f"objects.url = {url!r}: accepted s3://bucket/prefix or file:///path")
