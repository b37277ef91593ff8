"""SQLite backups (the embedded default): the online backup API, gzip, the same manifest.

The backup API copies a consistent image of the live database into a file in the spool under
the Steward home (writers are not blocked for long); the fingerprints are taken from that
image, so they describe exactly what is stored. Verification restores into a spool file (mode
0600, removed afterwards) and compares.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from steward.backup.catalogue import Manifest
from steward.backup.context import (
    UNPACK_ERRORS,
    BackupContext,
    damaged,
    open_object,
    spool_file,
    spool_folder,
    upload_stream,
)
from steward.backup.fingerprint import compare_fingerprints, sqlite_fingerprint
from steward.backup.pipeline import gunzip_stream, gzip_stream
from steward.errors import ConfigError

__all__ = ["backup_sqlite", "restore_sqlite", "sqlite_path", "verify_sqlite"]

IMAGE_NAME = "database.sqlite.gz"


def sqlite_path(url: str) -> Path:
    """The database file of a ``sqlite:///path`` URL."""
    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        raise ConfigError(f"{url!r}: accepted sqlite:///path/to/file.db")
    return Path(parsed.database)


def backup_sqlite(ctx: BackupContext, manifest: Manifest) -> None:
    """Copy the configured SQLite database into ``manifest``'s folder, compressed."""
    source = sqlite_path(ctx.settings.database_url)
    if not source.is_file():
        raise ConfigError(
            f"database file {source} does not exist: run `steward migrate` (or the demo) first, "
            "or set database.url"
        )
    with spool_folder(ctx, "backup") as folder:
        image = folder / "image.db"
        with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(image)) as copy:
            live.backup(copy)
            manifest.server_version = sqlite3.sqlite_version
            manifest.tables = sqlite_fingerprint(copy)
        name = IMAGE_NAME + (".age" if ctx.encrypting else "")
        with open(image, "rb") as raw:
            packed = gzip_stream(raw, max(ctx.config.compress_level, 1))
            try:
                upload_stream(ctx, manifest, name, packed, fmt="sqlite image, gzip")
            finally:
                packed.close()
    manifest.point_in_time = True


def _restore_to_file(ctx: BackupContext, manifest: Manifest, path: Path) -> None:
    record = manifest.objects[0]
    stream = open_object(ctx, manifest, record)
    try:
        plain = gunzip_stream(stream)
        with spool_file(path) as out:
            while chunk := plain.read(1 << 20):
                out.write(chunk)
        stream.read()  # the rest (gzip trailer padding) so the checksum is checked at EOF
    except UNPACK_ERRORS as exc:
        raise damaged(stream, record["key"], exc) from None
    finally:
        stream.close()


def verify_sqlite(ctx: BackupContext, manifest: Manifest) -> list[str]:
    """Restore into a temporary file and compare with the manifest; the differences found."""
    with spool_folder(ctx, "verify") as folder:  # plain bytes stay under the Steward home
        path = folder / "restored.db"
        _restore_to_file(ctx, manifest, path)
        with closing(sqlite3.connect(path)) as conn:
            restored = sqlite_fingerprint(conn)
    return compare_fingerprints(manifest.tables, restored)


def restore_sqlite(
    ctx: BackupContext, manifest: Manifest, target: str, *, replace: bool
) -> dict[str, Any]:
    """Write the backup's database image to the file of ``target`` (refused when non-empty)."""
    path = sqlite_path(target)
    existing = _table_count(path)
    if existing and not replace:
        raise ConfigError(
            f"restore target {path} is not empty ({existing} tables): restore into a new file, "
            "or pass --replace (replace=true) to overwrite it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.steward-restore")
    temporary.unlink(missing_ok=True)  # left by a restore killed halfway
    try:
        _restore_to_file(ctx, manifest, temporary)
        for suffix in ("-wal", "-shm"):  # stale WAL files of the replaced database
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return {"target": str(path), "replaced": bool(existing), "tables": len(manifest.tables)}


def _table_count(path: Path) -> int:
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    with closing(sqlite3.connect(path)) as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%'"
            ).fetchone()[0]
        )
