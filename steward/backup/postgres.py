"""PostgreSQL backups: ``pg_dump --format=custom`` streamed into the store, in one snapshot.

Backup: a REPEATABLE READ transaction exports its snapshot; ``pg_dump --snapshot`` dumps
exactly that snapshot while, in a thread, the same transaction fingerprints every table
(:mod:`steward.backup.fingerprint`). The dump goes from pg_dump's stdout (through age when
configured) into a streamed multipart upload that hashes it on the way: never whole in memory
or on local disk. A dump that fails or is cut short is deleted, never catalogued. With
``backup.pg_format = "directory"``, ``pg_dump --jobs`` dumps tables in parallel into a local
temporary folder whose files are then uploaded (for databases where dump time matters more).

Restore and verification: :mod:`steward.backup.postgres_restore`.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from steward.backup.catalogue import Manifest
from steward.backup.context import BackupContext, spool_folder, upload_stream
from steward.backup.fingerprint import pg_fingerprint
from steward.backup.pg_tools import find_pg_tool, libpq_env, server_major
from steward.backup.postgres_restore import DIR_PREFIX
from steward.errors import SourceUnavailable
from steward.settings import mask_url
from steward.storage import create_sql_engine, translate_sql_errors

__all__ = ["backup_postgres"]

DUMP_NAME = "database.pgdump"


def backup_postgres(ctx: BackupContext, manifest: Manifest) -> None:
    """Dump the configured database into ``manifest``'s folder and fill in the manifest."""
    engine = create_sql_engine(ctx.settings)
    try:
        with translate_sql_errors("backing up the database"):
            conn = engine.connect()
            try:
                _dump_in_snapshot(ctx, manifest, conn, engine.url)
            finally:
                # On a server that went away, closing fails too; the error above says why.
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    conn.close()
    finally:
        engine.dispose()
    manifest.point_in_time = True


def _dump_in_snapshot(ctx: BackupContext, manifest: Manifest, conn: Any, url: URL) -> None:
    conn.execution_options(isolation_level="REPEATABLE READ")
    conn.begin()
    version_num = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
    manifest.server_version = str(conn.execute(sa.text("SHOW server_version")).scalar_one())
    snapshot = str(conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one())
    tool = find_pg_tool("pg_dump", server_major(version_num), ctx.config.pg_bin_dir)
    fingerprint = _Fingerprint(conn)
    dump = _dump_directory if ctx.config.pg_format == "directory" else _stream_dump
    try:
        dump(ctx, manifest, tool, snapshot, url)
    except SourceUnavailable:
        fingerprint.wait()  # lost with the same server: pg_dump's words say why
        raise
    except BaseException:
        fingerprint.result()  # its failure (which ended the snapshot) explains the dump's
        raise
    manifest.tables = fingerprint.result()
    conn.rollback()  # read-only: the snapshot is released, nothing to commit


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
    # --jobs needs the directory format, which pg_dump can only write to local disk (the spool
    # under the Steward home): the files are uploaded one by one once the dump is complete.
    with spool_folder(ctx, "dump") as folder:
        target = folder / "dump"
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

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> dict[str, dict[str, Any]]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
