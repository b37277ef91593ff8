"""Folder object store: the S3 interface on a local directory (the embedded default).

Layout under the root folder::

    <root>/<key>                      the object's bytes
    <root>/.steward-meta/<key>.json   its sidecar: size, sha256, storage class, last_modified,
                                      user metadata and restore state

Writes are atomic (temporary file in the same directory, fsync, ``os.replace``) and the
sidecar is written last: it is the commit point, so ``list``/``head`` only ever show objects
whose bytes are complete. Key segments starting with ``.steward`` are reserved.

Cold classes behave like S3 with time taken from the injected clock: a restore becomes
available after the tier's typical delay and expires ``days`` later.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from steward.errors import ConfigError, ObjectCorrupted, ObjectExists, ObjectNotFound
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
    iter_chunks,
    utcnow,
    validate_key,
    validate_prefix,
)

__all__ = ["RESTORE_DELAYS", "FolderStore"]

RESERVED = ".steward"
META_DIR = ".steward-meta"
TMP_PREFIX = ".steward-tmp-"

# Typical completion times of S3 restores (AWS documentation), per class and tier.
RESTORE_DELAYS: dict[tuple[str, str], timedelta] = {
    ("GLACIER", "Expedited"): timedelta(minutes=5),
    ("GLACIER", "Standard"): timedelta(hours=4),
    ("GLACIER", "Bulk"): timedelta(hours=12),
    ("DEEP_ARCHIVE", "Standard"): timedelta(hours=12),
    ("DEEP_ARCHIVE", "Bulk"): timedelta(hours=48),
}


class FolderStore(ObjectStore):
    """Objects as files under a folder, with the same behaviour as :class:`S3Store`."""

    def __init__(self, url: str, *, clock: Clock = utcnow) -> None:
        self.url = url
        self.root = _root_from_url(url)
        self._meta_root = self.root / META_DIR
        self._clock = clock

    # Writing -------------------------------------------------------------------------------
    def put(
        self,
        key: str,
        data: bytes | IO[bytes],
        *,
        storage_class: str = "STANDARD",
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        path = self._data_path(key)
        check_storage_class(storage_class)
        user_metadata = check_metadata(key, metadata)
        self._make_parent(key, path)
        size, sha256 = _write_atomically(path, iter_chunks(data), key=key)
        sidecar = {
            "size": size,
            "sha256": sha256,
            "storage_class": storage_class,
            "last_modified": self._clock().isoformat(),
            "metadata": user_metadata,
            "restore": None,
        }
        self._write_sidecar(key, sidecar)
        return self._info(key, sidecar)

    def put_if_absent(
        self, key: str, data: bytes, *, metadata: dict[str, str] | None = None
    ) -> ObjectInfo:
        """Create-only write: the bytes land by ``os.link``, which fails if the key exists."""
        path = self._data_path(key)
        user_metadata = check_metadata(key, metadata)
        self._make_parent(key, path)
        size, sha256 = _write_atomically(path, iter_chunks(data), key=key, exclusive=True)
        sidecar = {
            "size": size,
            "sha256": sha256,
            "storage_class": "STANDARD",
            "last_modified": self._clock().isoformat(),
            "metadata": user_metadata,
            "restore": None,
        }
        self._write_sidecar(key, sidecar)
        return self._info(key, sidecar)

    def share_url(self, key: str, *, expires_seconds: int) -> tuple[str, str | None]:
        """The object's ``file://`` URL (it does not expire)."""
        return self._data_path(key).resolve().as_uri(), None

    def delete(self, key: str) -> None:
        # Sidecar first: the object disappears from head/list before its bytes go.
        self._meta_path(key).unlink(missing_ok=True)
        self._data_path(key).unlink(missing_ok=True)

    def set_storage_class(self, key: str, storage_class: str) -> ObjectInfo:
        check_storage_class(storage_class)
        sidecar = self._read_sidecar(key)
        info = self._info(key, sidecar)
        if info.storage_class == storage_class:
            return info
        if not info.readable:
            raise archived_error(key, info.storage_class, info.restore)
        # Like S3's copy onto itself: a new object version, so the restore and age reset.
        sidecar.update(
            storage_class=storage_class, restore=None, last_modified=self._clock().isoformat()
        )
        self._write_sidecar(key, sidecar)
        return self._info(key, sidecar)

    def request_restore(self, key: str, *, days: int = 7, tier: str = "Standard") -> ObjectInfo:
        sidecar = self._read_sidecar(key)
        info = self._info(key, sidecar)
        check_restore_request(key, info.storage_class, tier=tier, days=days)
        if info.storage_class not in COLD_CLASSES or info.restore == "pending":
            return info
        now = self._clock()
        # A second request on an available copy only extends it, as on S3.
        ready = (
            now if info.restore == "available" else now + RESTORE_DELAYS[(info.storage_class, tier)]
        )
        sidecar["restore"] = {
            "tier": tier,
            "days": days,
            "requested_at": now.isoformat(),
            "available_at": ready.isoformat(),
            "expires_at": (ready + timedelta(days=days)).isoformat(),
        }
        self._write_sidecar(key, sidecar)
        return self._info(key, sidecar)

    def put_lifecycle(self, rules: builtins.list[LifecycleRule]) -> bool:
        """A folder applies no lifecycle rules: tiering must move objects itself."""
        return False

    def get_lifecycle(self) -> builtins.list[LifecycleRule]:
        return []

    # Reading -------------------------------------------------------------------------------
    def open(self, key: str) -> VerifyingReader:
        info = self.head(key)
        if not info.readable:
            raise archived_error(key, info.storage_class, info.restore)
        try:
            handle = self._data_path(key).open("rb")
        except FileNotFoundError:
            raise ObjectCorrupted(
                f"object {key!r} has metadata but its file is missing under {self.root}; "
                "restore it from another copy or delete it"
            ) from None
        return VerifyingReader(handle, key=key, size=info.size, sha256=info.sha256)

    def head(self, key: str) -> ObjectInfo:
        return self._info(key, self._read_sidecar(key))

    def list(self, prefix: str = "", *, details: bool = True) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        return self._iter_objects(prefix)

    def _iter_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        for key in sorted(self._keys_under(prefix)):
            try:
                yield self.head(key)
            except ObjectNotFound:  # deleted while we were listing
                continue

    def _keys_under(self, prefix: str) -> Iterable[str]:
        start = self._meta_root / prefix.rpartition("/")[0]
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [name for name in dirnames if not name.startswith(RESERVED)]
            for name in filenames:
                if name.startswith(RESERVED) or not name.endswith(".json"):
                    continue
                key = (Path(dirpath) / name[: -len(".json")]).relative_to(self._meta_root)
                if key.as_posix().startswith(prefix):
                    yield key.as_posix()

    # Paths and sidecars --------------------------------------------------------------------
    def _data_path(self, key: str) -> Path:
        validate_key(key)
        if any(part.startswith(RESERVED) for part in key.split("/")):
            raise ConfigError(
                f"object key {key!r} is not valid in a folder store: segments starting with "
                f"{RESERVED!r} are reserved for Steward's own files"
            )
        return self.root / key

    def _meta_path(self, key: str) -> Path:
        self._data_path(key)
        return self._meta_root / f"{key}.json"

    def _make_parent(self, key: str, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._meta_path(key).parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(
                f"object key {key!r} cannot be stored in the folder store: a part of its path "
                "is already an object; choose a key that is not nested under another key"
            ) from None
        except OSError as exc:
            raise _not_writable(self.url, exc) from None

    def _read_sidecar(self, key: str) -> dict[str, Any]:
        try:
            text = self._meta_path(key).read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
        try:
            return dict(json.loads(text))
        except ValueError:
            raise ObjectCorrupted(
                f"metadata of object {key!r} is unreadable ({self._meta_path(key)}); "
                "restore it from another copy or delete it"
            ) from None

    def _write_sidecar(self, key: str, sidecar: dict[str, Any]) -> None:
        encoded = json.dumps(sidecar, sort_keys=True).encode("utf-8")
        _write_atomically(self._meta_path(key), [encoded], key=key)

    def _info(self, key: str, sidecar: dict[str, Any]) -> ObjectInfo:
        restore, expires = self._restore_state(sidecar.get("restore"))
        return ObjectInfo(
            key=key,
            size=int(sidecar["size"]),
            sha256=str(sidecar["sha256"]),
            storage_class=str(sidecar["storage_class"]),
            last_modified=datetime.fromisoformat(sidecar["last_modified"]),
            metadata=dict(sidecar.get("metadata") or {}),
            restore=restore,
            restore_expires=expires,
            stored_sha256=str(sidecar["sha256"]),  # hashed while the file was written
        )

    def _restore_state(
        self, restore: dict[str, Any] | None
    ) -> tuple[RestoreState, datetime | None]:
        if not restore:
            return "none", None
        now = self._clock()
        expires = datetime.fromisoformat(restore["expires_at"])
        if now < datetime.fromisoformat(restore["available_at"]):
            return "pending", None
        if now < expires:
            return "available", expires
        return "none", None


def _root_from_url(url: str) -> Path:
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path:
        raise ConfigError(
            f"objects.url = {url!r} is not a usable folder URL: accepted file:///absolute/path"
        )
    return Path(url2pathname(parts.path))


def _not_writable(url: str, exc: OSError) -> ConfigError:
    """A folder the store cannot write to: a setting to fix, not a transient fault."""
    return ConfigError(
        f"objects.url = {url!r}: cannot write {exc.filename or 'the folder'} "
        f"({exc.strerror or exc}); make the folder writable or point objects.url elsewhere"
    )


def _write_atomically(
    path: Path, chunks: Iterable[bytes], *, key: str, exclusive: bool = False
) -> tuple[int, str]:
    """Write ``chunks`` to ``path`` all-or-nothing; returns (size, sha256).

    ``exclusive``: never replace an existing file (ObjectExists instead).
    """
    temporary = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}")
    digest, size = hashlib.sha256(), 0
    try:
        with temporary.open("wb") as handle:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(temporary, path)  # atomic, and refuses an existing path
            temporary.unlink()
        else:
            os.replace(temporary, path)
    except FileExistsError:
        temporary.unlink(missing_ok=True)
        raise ObjectExists(f"object {key!r} already exists; it was kept as is") from None
    except IsADirectoryError:
        temporary.unlink(missing_ok=True)
        raise ConfigError(
            f"object key {key!r} cannot be stored in the folder store: other objects are "
            "nested under it; choose a key that is not a prefix folder of other keys"
        ) from None
    except (PermissionError, OSError) as exc:
        temporary.unlink(missing_ok=True)
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC):
            raise
        raise ConfigError(
            f"cannot write object {key!r} to {path.parent} ({exc.strerror}); make the folder "
            "writable (and give it space), or point objects.url elsewhere"
        ) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return size, digest.hexdigest()


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
