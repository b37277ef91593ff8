"""Object store: one interface for S3 (and S3-compatible stores) and a local folder.

Every object carries its SHA-256 (S3 user metadata ``sha256``; a sidecar for the folder store),
recorded at write time and checked on every full read: a corrupted object raises
:class:`~steward.errors.ObjectCorrupted` naming the key. Keys are relative to the store's
prefix (``s3://bucket/prefix`` or ``file:///path``).

Storage classes are S3's names. The folder store keeps the class as metadata and models the
cold classes (reads need a restore first) so tiering and restore logic behave the same on both.
"""

from __future__ import annotations

import builtins
import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Literal, cast

from steward.errors import (
    ConfigError,
    ObjectArchived,
    ObjectCorrupted,
    ObjectExists,
    ObjectNotFound,
)

__all__ = [
    "COLD_CLASSES",
    "STORAGE_CLASSES",
    "LifecycleRule",
    "ObjectInfo",
    "ObjectStore",
    "RESTORE_TIERS",
    "VerifyingReader",
    "archived_error",
    "check_metadata",
    "check_restore_request",
    "check_storage_class",
    "iter_chunks",
    "utcnow",
    "validate_key",
    "validate_prefix",
]

STORAGE_CLASSES = ("STANDARD", "STANDARD_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
COLD_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
RESTORE_TIERS = ("Expedited", "Standard", "Bulk")
MAX_KEY_BYTES = 1024  # S3's limit on the full key, prefix included
_METADATA_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,127}")
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
    # The SHA-256 the store itself computed over the bytes it holds (S3: its additional
    # checksum, validated on upload; folder: hashed while writing), "" when it has none (a
    # multipart upload's checksum is of its parts). Equal to ``sha256`` of the bytes sent, it
    # proves the object intact without reading it back.
    stored_sha256: str = ""

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


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a usable listing prefix (may be empty or end with '/')."""
    if not isinstance(prefix, str) or prefix.startswith("/") or "\\" in prefix:
        raise ConfigError(
            f"object prefix {prefix!r} is not valid: use a relative prefix like 'archive/orders/'"
        )
    if any(part in (".", "..") for part in prefix.split("/")):
        raise ConfigError(f"object prefix {prefix!r} must not contain '.' or '..' segments")
    return prefix


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid object key relative to the store prefix.

    Accepted: a non-empty relative path of non-empty segments separated by '/', no '.' or
    '..' segments, no backslashes or control characters, at most 1024 bytes.
    """
    problem = _key_problem(key)
    if problem:
        raise ConfigError(
            f"object key {key!r} is not valid: {problem}; "
            "use a relative path like 'archive/orders/2024/batch-0001.parquet'"
        )
    return key


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str) or not key:
        return "it is empty"
    if key.startswith("/"):
        return "it starts with '/'"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return f"it is longer than {MAX_KEY_BYTES} bytes"
    if "\\" in key or any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        return "it contains a backslash or a control character"
    segments = key.split("/")
    if any(part in (".", "..") for part in segments):
        return "it contains a '.' or '..' segment"
    if any(not part for part in segments):
        return "it has an empty segment ('//' or a trailing '/')"
    return None


def check_storage_class(storage_class: str) -> str:
    """Return ``storage_class`` if it is one Steward knows, else raise ConfigError."""
    if storage_class not in STORAGE_CLASSES:
        raise ConfigError(
            f"storage class {storage_class!r} is not supported; accepted: "
            f"{', '.join(STORAGE_CLASSES)}"
        )
    return storage_class


def check_metadata(key: str, metadata: dict[str, Any] | None) -> dict[str, str]:
    """User metadata as S3 stores it (lower-case names), or ConfigError naming the entry.

    Names are letters, digits, '-' and '_'; values printable ASCII (they travel as HTTP
    headers); ``sha256`` is reserved for the checksum the store records itself.
    """
    checked: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        lowered = str(name).lower()
        if not _METADATA_NAME.fullmatch(lowered) or lowered == "sha256":
            raise ConfigError(
                f"metadata name {name!r} on {key!r} is not valid: use letters, digits, '-', '_' "
                "(and not the reserved 'sha256')"
            )
        if isinstance(value, int | float):  # counts and sizes are written as text, like S3
            value = str(value)
        if not isinstance(value, str) or not all(32 <= ord(ch) < 127 for ch in value):
            raise ConfigError(
                f"metadata {name!r} on {key!r} = {value!r}: accepted a printable ASCII string"
            )
        checked[lowered] = value
    return checked


def check_restore_request(key: str, storage_class: str, *, tier: str, days: int) -> None:
    """Refuse restore requests S3 would refuse: unknown tier, days < 1, Expedited DEEP_ARCHIVE."""
    if tier not in RESTORE_TIERS:
        raise ConfigError(
            f"restore tier {tier!r} for {key!r} is not valid; accepted: {', '.join(RESTORE_TIERS)}"
        )
    if not isinstance(days, int) or days < 1:
        raise ConfigError(f"restore days = {days!r} for {key!r}: accepted an integer >= 1")
    if storage_class == "DEEP_ARCHIVE" and tier == "Expedited":
        raise ConfigError(
            f"object {key!r} is in DEEP_ARCHIVE, which has no Expedited restores; "
            "use tier 'Standard' (~12 h) or 'Bulk' (~48 h)"
        )


def archived_error(key: str, storage_class: str, restore: RestoreState) -> ObjectArchived:
    """The error for reading a cold object, saying what to do about it."""
    if restore == "pending":
        return ObjectArchived(
            f"object {key!r} is in {storage_class} and its restore is still in progress: "
            "read it once the restore completes (head() then shows restore='available')"
        )
    return ObjectArchived(
        f"object {key!r} is in {storage_class} and not restored: request a restore first "
        "(request_restore with tier Expedited/Standard/Bulk) and read it once it is available"
    )


CHUNK_SIZE = 1 << 20


def iter_chunks(data: bytes | bytearray | memoryview | IO[bytes]) -> Iterator[bytes]:
    """``data`` in chunks of at most 1 MiB, reading a stream as it goes (bounded memory)."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), CHUNK_SIZE):
            yield bytes(view[start : start + CHUNK_SIZE])
        return
    while True:
        chunk = data.read(CHUNK_SIZE)
        if not chunk:
            return
        if not isinstance(chunk, bytes | bytearray):
            raise ConfigError(f"object data must be bytes or a binary stream, got {type(chunk)}")
        yield bytes(chunk)


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
        """Write an object from bytes or a stream with its SHA-256 (S3: multipart when large).
        The result's ``stored_sha256`` is the store's own SHA-256 of what it now holds, when it
        has one (S3: checked against the bytes on upload; "" for a multipart upload)."""

    def put_if_absent(
        self, key: str, data: bytes, *, metadata: dict[str, str] | None = None
    ) -> ObjectInfo:
        """Write ``key`` only when no object is there: never overwrite; ObjectExists if one is.

        This default checks first (a race window remains); stores that can make the write
        itself conditional override it (S3: ``If-None-Match: *``; folder: a hard link).
        """
        if self.exists(key):
            raise ObjectExists(f"object {key!r} already exists in {self.url}; it was kept as is")
        return self.put(key, data, metadata=metadata)

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
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    @abstractmethod
    def list(self, prefix: str = "", *, details: bool = True) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order.

        With ``details=False`` a store may skip the per-object request it needs for sha256,
        user metadata and restore state (S3 listings carry only key, size, class and time):
        those fields are then empty / "none". Use it for large listings that only need sizes.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object. Deleting a missing object is not an error (idempotent reruns)."""

    def delete_many(self, keys: builtins.list[str]) -> None:
        """Remove several objects (missing ones are no error). This default deletes them one
        by one; S3 sends one request per 1,000 keys."""
        for key in keys:
            self.delete(key)

    def copy(
        self,
        source: str,
        target: str,
        *,
        storage_class: str = "STANDARD",
        size: int | None = None,
    ) -> ObjectInfo:
        """Copy object ``source`` to ``target`` (its checksum and user metadata kept). The
        result's ``stored_sha256`` is the store's own SHA-256 of the copy ("" if it has none):
        equal to the source's, it proves the copy intact without reading it. ``size``: the
        source's size, when the caller knows it (a store may then skip looking it up).

        This default reads the source (checksum-verified) and writes it again; stores that
        can copy in place override it (S3: a server-side copy).
        """
        metadata = self.head(source).metadata
        with self.open(source) as reader:
            stream = cast(IO[bytes], reader)  # read() is all put needs
            return self.put(target, stream, storage_class=storage_class, metadata=metadata)

    @abstractmethod
    def set_storage_class(self, key: str, storage_class: str) -> ObjectInfo:
        """Move an object to another storage class (S3: copy onto itself), keeping its checksum."""

    @abstractmethod
    def request_restore(self, key: str, *, days: int = 7, tier: str = "Standard") -> ObjectInfo:
        """Ask for a temporary readable copy of a cold object; returns its restore state."""

    @abstractmethod
    def put_lifecycle(self, rules: builtins.list[LifecycleRule]) -> bool:
        """Install lifecycle transitions; False when the store does not apply lifecycle rules."""

    def get_lifecycle(self) -> builtins.list[LifecycleRule]:
        """Steward's lifecycle transitions installed for this store (empty when none)."""
        raise NotImplementedError(f"{type(self).__name__} does not report lifecycle rules")

    def share_url(self, key: str, *, expires_seconds: int) -> tuple[str, str | None]:
        """A link a browser opens, and when it stops working (None: it does not expire).

        This default is the store URL plus the key (S3 overrides it with a presigned HTTPS
        URL; the folder store gives a ``file://`` path).
        """
        validate_key(key)
        return f"{self.url.rstrip('/')}/{key}", None

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
