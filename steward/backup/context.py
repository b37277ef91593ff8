"""What every backup step needs (settings, store, clock), and moving backup objects in and out.

Objects are written through :func:`upload_stream` (age encryption when recipients are set,
then a streamed upload hashed on the way) and read back through :func:`open_object`, which
checks the store's checksum against the manifest's and decrypts when needed.

Plain (decrypted) backup data that must sit in a file (a SQLite image, pg_dump's directory
format, a dump checked before it is restored over a database) goes only to the *spool*: a
folder under the Steward home (``{home}/spool``, mode 0700, files 0600), never the system's
temporary folder, and is removed when the step ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from steward.backup.catalogue import Manifest
from steward.backup.pipeline import decrypt_stream, encrypt_stream, load_identity
from steward.errors import ObjectCorrupted
from steward.settings import BackupSettings, Settings
from steward.storage import ObjectStore, open_object_store, put_stream, utcnow

__all__ = [
    "UNPACK_ERRORS",
    "BackupContext",
    "damaged",
    "download_object",
    "encryption_record",
    "open_backup_context",
    "open_object",
    "spool_file",
    "spool_folder",
    "upload_stream",
]


@dataclass
class BackupContext:
    """Settings, the object store and the clock of one backup, verify, restore or prune."""

    settings: Settings
    store: ObjectStore
    clock: Callable[[], datetime] = utcnow
    documents: Any | None = None  # a DocumentsClient; injected in tests (mongomock)

    @property
    def config(self) -> BackupSettings:
        return self.settings.backup

    @property
    def encrypting(self) -> bool:
        return bool(self.config.age_recipients)


def open_backup_context(
    settings: Settings, *, clock: Callable[[], datetime] = utcnow, documents: Any | None = None
) -> BackupContext:
    """The context for ``settings``: the configured object store, the real clock.

    Its database is ``backup.database_url`` when set (the backup role's credentials: pg_dump and
    verification connect with them), else ``database.url``.
    """
    settings = settings.for_flow("backup")
    return BackupContext(settings, open_object_store(settings, clock=clock), clock, documents)


def encryption_record(ctx: BackupContext) -> dict[str, Any]:
    """How a new backup is encrypted, for its manifest (public keys only)."""
    objects = ctx.settings.objects
    server_side = objects.server_side_encryption if ctx.store.url.startswith("s3://") else ""
    return {
        "client": "age" if ctx.encrypting else "none",
        "recipients": list(ctx.config.age_recipients),
        "server_side": server_side or "none",
        "kms_key_id": objects.kms_key_id if server_side == "aws:kms" else None,
    }


def upload_stream(
    ctx: BackupContext, manifest: Manifest, name: str, stream: IO[bytes], *, fmt: str
) -> dict[str, Any]:
    """Store ``stream`` as object ``name`` of the backup (encrypted when configured)."""
    body = encrypt_stream(stream, ctx.config.age_recipients) if ctx.encrypting else stream
    try:
        info = put_stream(
            ctx.store,
            manifest.object_key(name),
            body,
            part_size_mb=ctx.config.part_size_mb,
            storage_class=ctx.config.storage_class,
            metadata={"backup-id": manifest.id},
        )
    finally:
        if body is not stream:
            body.close()
    record = {
        "name": name,
        "key": info.key,
        "size": info.size,
        "sha256": info.sha256,
        "format": fmt + (" + age" if ctx.encrypting else ""),
    }
    manifest.objects.append(record)
    return record


def open_object(ctx: BackupContext, manifest: Manifest, record: dict[str, Any]) -> IO[bytes]:
    """The plain bytes of one backup object; raises ObjectCorrupted when they do not match."""
    info = ctx.store.head(record["key"])
    if info.sha256 != record["sha256"] or info.size != record["size"]:
        raise ObjectCorrupted(
            f"backup object {record['key']!r} does not match manifest of backup {manifest.id}: "
            f"store has {info.size} bytes sha256 {info.sha256[:16]}…, manifest says "
            f"{record['size']} bytes sha256 {record['sha256'][:16]}…; use another backup"
        )
    reader: IO[bytes] = ctx.store.open(record["key"])  # type: ignore[assignment]
    if not manifest.encrypted:
        return reader
    recipients = list(manifest.encryption.get("recipients", []))
    what = f"backup {manifest.id} ({record['name']})"
    identity = load_identity(
        ctx.config.age_identity.get_secret_value(),
        ctx.config.age_identity_file,
        what=what,
        recipients=recipients,
    )
    return decrypt_stream(reader, identity, what=what, recipients=recipients)


def download_object(
    ctx: BackupContext, manifest: Manifest, record: dict[str, Any], handle: IO[bytes]
) -> None:
    """Copy one backup object's plain bytes into ``handle`` (checksum checked at the end)."""
    stream = open_object(ctx, manifest, record)
    try:
        shutil.copyfileobj(stream, handle, 1 << 20)
    finally:
        stream.close()


@contextmanager
def spool_folder(ctx: BackupContext, purpose: str) -> Iterator[Path]:
    """A private folder under ``{home}/spool`` (mode 0700), removed when the block ends."""
    root = ctx.settings.home.resolve() / "spool"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    root.chmod(0o700)
    with tempfile.TemporaryDirectory(prefix=f"{purpose}-", dir=root) as folder:  # mode 0700
        yield Path(folder)


def spool_file(path: Path) -> IO[bytes]:
    """Create ``path`` for writing with mode 0600 (never readable by other users)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


UNPACK_ERRORS = (OSError, EOFError, zlib.error, ValueError)


def damaged(stream: IO[bytes], key: str, exc: BaseException) -> ObjectCorrupted:
    """The error for a backup object that cannot be unpacked: its checksum's, if that fails."""
    while stream.read(1 << 20):  # reaching EOF checks the SHA-256 (raises ObjectCorrupted)
        pass
    return ObjectCorrupted(
        f"backup object {key!r} cannot be unpacked ({exc}) although its checksum matches: "
        "it was damaged before upload; use another backup"
    )
