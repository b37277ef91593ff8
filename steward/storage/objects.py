"""Object store: one interface for S3 (and S3-compatible stores) and a local folder.

Every object carries its SHA-256 (S3 user metadata ``sha256``; a sidecar for the folder store),
recorded at write time and checked on every full read: a corrupted object raises
:class:`~steward.errors.ObjectCorrupted` naming the key. Keys are relative to the store's
prefix (``s3://bucket/prefix`` or ``file:///path``).

Storage classes are S3's names. The folder store keeps the class as metadata and models the
cold classes (reads need a restore first) so tiering and restore logic behave the same on both.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Literal

from steward.errors import ConfigError, ObjectCorrupted
from steward.settings import Settings

__all__ = [
    "COLD_CLASSES",
    "STORAGE_CLASSES",
    "LifecycleRule",
    "ObjectInfo",
    "ObjectStore",
    "VerifyingReader",
    "open_object_store",
    "utcnow",
]

STORAGE_CLASSES = ("STANDARD", "STANDARD_IA", "GLACIER", "DEEP_ARCHIVE")
COLD_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
RestoreState = Literal["none", "pending", "available"]
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object."""

    key: str
    size: int
    sha256: str
    storage_class: str
    last_modified: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    restore: RestoreState = "none"
    restore_expires: datetime | None = None

    @property
    def readable(self) -> bool:
        """False while the object is cold and not (yet) restored."""
        return self.storage_class not in COLD_CLASSES or self.restore == "available"


@dataclass(frozen=True)
class LifecycleRule:
    """Transition objects under ``prefix`` to ``storage_class`` ``days`` after creation."""

    prefix: str
    days: int
    storage_class: str


class VerifyingReader:
    """A read-only stream that hashes what it hands out and checks size + SHA-256 at EOF."""

    def __init__(self, raw: IO[bytes], *, key: str, size: int, sha256: str) -> None:
        self._raw = raw
        self._key = key
        self._expected_size = size
        self._expected_sha = sha256
        self._hash = hashlib.sha256()
        self._seen = 0
        self._checked = False

    def read(self, n: int = -1) -> bytes:
        chunk = self._raw.read(n) if n is not None and n >= 0 else self._raw.read()
        if chunk:
            self._hash.update(chunk)
            self._seen += len(chunk)
        if not chunk or n is None or n < 0:
            self._check()
        return chunk

    def readable(self) -> bool:
        return True

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        digest = self._hash.hexdigest()
        if self._seen != self._expected_size or digest != self._expected_sha:
            raise ObjectCorrupted(
                f"object {self._key!r} is corrupted: read {self._seen} bytes with sha256 "
                f"{digest[:16]}…, expected {self._expected_size} bytes with sha256 "
                f"{self._expected_sha[:16]}…; restore it from another copy or re-create it"
            )

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ObjectStore(ABC):
    """The interface every flow uses. Implementations: ``FolderStore``, ``S3Store``."""

    url: str

    @abstractmethod
    def put(
        self,
        key: str,
        data: bytes | IO[bytes],
        *,
        storage_class: str = "STANDARD",
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Write an object from bytes or a stream (multipart above the threshold) with its SHA-256."""

    @abstractmethod
    def open(self, key: str) -> VerifyingReader:
        """A stream of the object's bytes; raises ObjectCorrupted at EOF on a checksum mismatch.

        Raises ObjectNotFound when absent and ObjectArchived when cold and not restored.
        """

    def get_bytes(self, key: str) -> bytes:
        """The whole object, verified."""
        with self.open(key) as reader:
            return reader.read()

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Metadata of one object; raises ObjectNotFound."""

    def exists(self, key: str) -> bool:
        from steward.errors import ObjectNotFound

        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object. Deleting a missing object is not an error (idempotent reruns)."""

    @abstractmethod
    def set_storage_class(self, key: str, storage_class: str) -> ObjectInfo:
        """Move an object to another storage class (S3: copy onto itself), keeping its checksum."""

    @abstractmethod
    def request_restore(self, key: str, *, days: int = 7, tier: str = "Standard") -> ObjectInfo:
        """Ask for a temporary readable copy of a cold object; returns its restore state."""

    @abstractmethod
    def put_lifecycle(self, rules: list[LifecycleRule]) -> bool:
        """Install lifecycle transitions; False when the store does not apply lifecycle rules."""

    def verify(self, key: str, *, size: int, sha256: str) -> ObjectInfo:
        """Check an object's recorded size and checksum against what the caller wrote.

        Reads the bytes back when the object is readable, so a store that lies in its
        metadata is still caught. Raises ObjectCorrupted on mismatch.
        """
        info = self.head(key)
        if info.size != size or info.sha256 != sha256:
            raise ObjectCorrupted(
                f"object {key!r} does not match what was written: store has {info.size} bytes "
                f"sha256 {info.sha256[:16]}…, expected {size} bytes sha256 {sha256[:16]}…"
            )
        if info.readable:
            with self.open(key) as reader:
                while reader.read(1 << 20):
                    pass
        return info


def open_object_store(settings: Settings, *, clock: Clock = utcnow) -> ObjectStore:
    """The store configured by ``objects.url`` (a folder under home by default)."""
    url = settings.objects_url
    if url.startswith("file://"):
        from steward.storage.folder import FolderStore

        return FolderStore(url, clock=clock)
    if url.startswith("s3://"):
        from steward.storage.s3 import S3Store

        return S3Store(url, settings.objects, clock=clock)
    raise ConfigError(f"objects.url = {url!r}: accepted s3://bucket/prefix or file:///path")
