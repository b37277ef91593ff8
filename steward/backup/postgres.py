"""PostgreSQL backups: ``pg_dump --format=custom`` streamed into the store, in one snapshot.

Backup: a REPEATABLE READ transaction exports its snapshot; ``pg_dump --snapshot`` dumps
exactly that snapshot while, in a thread, the same transaction fingerprints every table
(:mod:`steward.backup.fingerprint`). The dump goes from pg_dump's stdout (through age when
configured) into a streamed multipart upload that hashes it on the way: never whole in memory
or on local disk. A dump that fails or is cut short is deleted, never catalogued. With
``backup.pg_format = "directory"``, ``pg_dump --jobs`` dumps tables in parallel into a local
temporary folder whose files are then uploaded (for databases where dump time matters more).

Restore: the object is downloaded (and decrypted) to a temporary file, its SHA-256 checked,
then ``pg_restore --jobs`` loads it. Verification restores into a scratch database (created
with a generated name, always dropped) and compares fingerprints with the manifest.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from steward.backup.catalogue import Manifest
from steward.backup.context import BackupContext, download_object, upload_stream
from steward.backup.fingerprint import compare_fingerprints, pg_fingerprint, pg_table_names
from steward.backup.pg_tools import find_pg_tool, libpq_env, server_major
from steward.errors import ConfigError
from steward.settings import mask_url
from steward.storage import create_sql_engine

__all__ = ["backup_postgres", "restore_postgres", "verify_postgres"]

DUMP_NAME = "database.pgdump"
DIR_PREFIX = "pgdir-"  # directory format: one object per file, flat in the backup's folder


def backup_postgres(ctx: BackupContext, manifest: Manifest) -> None:
    """Dump the configured database into ``manifest``'s folder and fill in the manifest."""
    engine = create_sql_engine(ctx.settings)
    try:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            conn.begin()
            version_num = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
            manifest.server_version = str(conn.execute(sa.text("SHOW server_version")).scalar_one())
            snapshot = str(conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one())
            tool = find_pg_tool("pg_dump", server_major(version_num), ctx.config.pg_bin_dir)
            fingerprint = _Fingerprint(conn)
            dump = _dump_directory if ctx.config.pg_format == "directory" else _stream_dump
            try:
                dump(ctx, manifest, tool, snapshot, engine.url)
            except BaseException:
                fingerprint.result()  # its failure (which ended the snapshot) explains the dump's
                raise
            manifest.tables = fingerprint.result()
            conn.rollback()  # read-only: the snapshot is released, nothing to commit
    finally:
        engine.dispose()
    manifest.point_in_time = True


def _stream_dump(
    ctx: BackupContext, manifest: Manifest, tool: Any, snapshot: str, url: URL
) -> None:
    args = [
        "--format=custom",
        f"--compress={ctx.config.compress_level}",
        f"--snapshot={snapshot}",
        "--no-password",
    ]
    running = tool.start(args, libpq_env(url), stdout=subprocess.PIPE)
    name = DUMP_NAME + (".age" if ctx.encrypting else "")
    try:
        upload_stream(ctx, manifest, name, running.stdout, fmt="pg_dump custom")
        running.finish(f"dumping {mask_url(url.render_as_string(hide_password=False))}")
    except BaseException:
        running.kill()
        with contextlib.suppress(Exception):  # a cut-short dump must not stay as an object
            ctx.store.delete(manifest.object_key(name))
        manifest.objects = [o for o in manifest.objects if o["name"] != name]
        raise


def _dump_directory(
    ctx: BackupContext, manifest: Manifest, tool: Any, snapshot: str, url: URL
) -> None:
    # --jobs needs the directory format, which pg_dump can only write to local disk: the files
    # are uploaded one by one once the dump is complete (then the folder is removed).
    with tempfile.TemporaryDirectory(prefix="steward-pgdir-") as folder:
        target = Path(folder) / "dump"
        args = [
            "--format=directory",
            f"--jobs={ctx.config.dump_jobs}",
            f"--compress={ctx.config.compress_level}",
            f"--snapshot={snapshot}",
            "--no-password",
            f"--file={target}",
        ]
        shown = mask_url(url.render_as_string(hide_password=False))
        tool.start(args, libpq_env(url)).finish(f"dumping {shown}")
        suffix = ".age" if ctx.encrypting else ""
        for path in sorted(target.iterdir()):
            with open(path, "rb") as handle:
                upload_stream(
                    ctx,
                    manifest,
                    f"{DIR_PREFIX}{path.name}{suffix}",
                    handle,
                    fmt="pg_dump directory",
                )


class _Fingerprint:
    """Fingerprint the tables in a thread, on the snapshot's connection, while the dump runs."""

    def __init__(self, conn: Any) -> None:
        self._value: dict[str, dict[str, Any]] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
        self._thread.start()

    def _run(self, conn: Any) -> None:
        try:
            self._value = pg_fingerprint(conn)
        except BaseException as exc:
            self._error = exc

    def result(self) -> dict[str, dict[str, Any]]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def restore_postgres(
    ctx: BackupContext, manifest: Manifest, target: str, *, replace: bool, jobs: int
) -> dict[str, Any]:
    """Load ``manifest``'s dump into the database at ``target`` (refused when non-empty)."""
    url = _postgres_url(target)
    engine = create_sql_engine(ctx.settings, url=url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            version_num = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
            existing = len(pg_table_names(conn))
    finally:
        engine.dispose()
    shown = mask_url(url.render_as_string(hide_password=False))
    if existing and not replace:
        raise ConfigError(
            f"restore target {shown} is not empty ({existing} tables): restore into an empty "
            "database, or pass --replace (replace=true) to drop and recreate what the backup holds"
        )
    tool = find_pg_tool("pg_restore", server_major(version_num), ctx.config.pg_bin_dir)
    args = ["--no-owner", "--exit-on-error", f"--jobs={jobs}", f"--dbname={url.database}"]
    if replace:
        args += ["--clean", "--if-exists"]
    with _downloaded(ctx, manifest) as path:
        tool.start([*args, path], libpq_env(url)).finish(f"restoring into {shown}")
    return {"target": shown, "replaced": bool(existing), "tables": len(manifest.tables)}


@contextmanager
def _downloaded(ctx: BackupContext, manifest: Manifest) -> Iterator[str]:
    # pg_restore --jobs needs a seekable file (or the directory format's folder); every
    # checksum is checked before it starts.
    with tempfile.TemporaryDirectory(prefix="steward-restore-") as folder:
        if not manifest.objects[0]["name"].startswith(DIR_PREFIX):
            path = Path(folder) / "database.pgdump"
            with open(path, "wb") as handle:
                download_object(ctx, manifest, manifest.objects[0], handle)
            yield str(path)
            return
        for record in manifest.objects:
            name = record["name"].removeprefix(DIR_PREFIX).removesuffix(".age")
            with open(Path(folder) / name, "wb") as handle:
                download_object(ctx, manifest, record, handle)
        yield folder


def verify_postgres(ctx: BackupContext, manifest: Manifest) -> list[str]:
    """Restore into a scratch database, compare with the manifest; the differences found."""
    admin_url = _postgres_url(ctx.config.verify_url.get_secret_value() or ctx.settings.database_url)
    name = f"{ctx.config.scratch_prefix}{secrets.token_hex(6)}"
    admin = create_sql_engine(ctx.settings, url=admin_url.render_as_string(hide_password=False))
    scratch_url = admin_url.set(database=name)
    try:
        _execute_autocommit(admin, "CREATE DATABASE {}", name)
        restore_postgres(
            ctx,
            manifest,
            scratch_url.render_as_string(hide_password=False),
            replace=False,
            jobs=ctx.config.restore_jobs,
        )
        scratch = create_sql_engine(
            ctx.settings, url=scratch_url.render_as_string(hide_password=False)
        )
        try:
            with scratch.connect() as conn:
                methods = {name: t.get("method", "") for name, t in manifest.tables.items()}
                restored = pg_fingerprint(conn, methods)
        finally:
            scratch.dispose()
        return compare_fingerprints(manifest.tables, restored)
    finally:
        with contextlib.suppress(Exception):
            _execute_autocommit(admin, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name)
        admin.dispose()


def _execute_autocommit(engine: Engine, template: str, name: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        quoted = conn.dialect.identifier_preparer.quote(name)  # generated name, quoted anyway
        conn.execute(sa.text(template.format(quoted)))


def _postgres_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except Exception:
        raise ConfigError(f"{mask_url(raw)!r} is not a database URL") from None
    if url.get_backend_name() != "postgresql" or not url.database:
        raise ConfigError(
            f"{mask_url(raw)!r}: accepted a PostgreSQL URL with a database name, "
            "e.g. postgresql://user@host:5432/restored"
        )
    return url.set(drivername="postgresql+psycopg")
