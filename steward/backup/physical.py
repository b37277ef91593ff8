"""Physical backups (engine ``physical``): pgBackRest does the copying, Steward proves them.

- **Backup**: ``pgbackrest backup --type full|diff|incr`` (WAL is archived continuously by the
  server's ``archive_command``, :func:`~steward.backup.pgbackrest.archive_command`). Right
  after it, Steward marks the moment it will verify: with every user table of the database
  locked in SHARE mode for a few milliseconds (writers wait, readers do not), one transaction
  exports its snapshot and writes a named restore point; a second transaction imports that
  snapshot, the locks are released, and the tables are fingerprinted in it at leisure. The
  snapshot and the restore point see exactly the same committed rows. The same transaction
  switches WAL, so the server archives the restore point's WAL file while the tables are
  read; the backup is done once ``pg_stat_archiver`` shows that file archived. The manifest
  (``engine = "physical"``) holds the label, type, restore point and fingerprints (and the
  seconds each step took); pgBackRest's repository holds the data.
- **Verify by restore**: the backup is restored into a scratch cluster (its own folder under
  ``backup.physical.scratch_dir``, its own port, archiving off), recovered to the restore
  point, promoted, started, and fingerprinted; any difference, a restore that fails (a
  damaged repository file) or a cluster that does not start fails the verification.
- **Point-in-time recovery**: :func:`restore_to_time` restores into a new data folder and
  recovers to the given moment.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from steward.backup.catalogue import Manifest
from steward.backup.context import BackupContext
from steward.backup.fingerprint import compare_fingerprints, pg_fingerprint, pg_table_names
from steward.backup.pgbackrest import (
    archive_command,
    give_to_owner,
    info,
    pgbackrest,
    run_as_owner,
    write_config,
)
from steward.errors import ConfigError, SourceUnavailable, StewardError
from steward.storage import create_sql_engine, translate_sql_errors

__all__ = [
    "backup_physical",
    "describe_window",
    "expire_physical",
    "physical_chain",
    "physical_labels",
    "physical_status",
    "restore_to_time",
    "setup_physical",
    "verify_physical",
]

BACKUP_TYPES = ("full", "diff", "incr")
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


def setup_physical(ctx: BackupContext) -> str:
    """Write pgbackrest.conf, create the stanza (idempotent) and check that WAL archiving works;
    returns the ``archive_command`` the server must have (with ``archive_mode = on``)."""
    write_config(ctx.settings)
    pgbackrest(ctx.settings, "stanza-create")
    pgbackrest(ctx.settings, "check")
    return archive_command(ctx.settings)


def backup_physical(ctx: BackupContext, manifest: Manifest, backup_type: str = "full") -> None:
    """Take a pgBackRest backup, mark the verifiable moment, fingerprint it; fill ``manifest``."""
    if backup_type not in BACKUP_TYPES:
        raise ConfigError(f"backup type {backup_type!r}: accepted {', '.join(BACKUP_TYPES)}")
    started = time.perf_counter()
    pgbackrest(ctx.settings, "backup", f"--type={backup_type}")
    newest = info(ctx.settings).get("backup", [])[-1]
    copied = time.perf_counter()
    point = f"steward-{manifest.id}"
    manifest.tables, lsn, walfile, manifest.server_version = _mark_and_fingerprint(ctx, point)
    marked = time.perf_counter()
    _wait_archived(ctx, walfile)  # the restore point's WAL, archived while we fingerprinted
    manifest.physical = {
        "label": newest["label"],
        "type": newest["type"],
        "restore_point": point,
        "restore_point_lsn": lsn,
        "database_size": newest["info"]["size"],
        "repository_size": newest["info"]["repository"]["delta"],
        "stopped_at": datetime.fromtimestamp(newest["timestamp"]["stop"], UTC).isoformat(),
        "seconds": {  # where the time went: pgBackRest's copy, Steward's proof on top
            "pgbackrest": round(copied - started, 3),
            "mark_and_fingerprint": round(marked - copied, 3),
            "wal_archived": round(time.perf_counter() - marked, 3),
        },
    }
    manifest.point_in_time = True


def _mark_and_fingerprint(
    ctx: BackupContext, point: str
) -> tuple[dict[str, dict[str, Any]], str, str, str]:
    """Fingerprints, restore point LSN, its WAL file (switched, so the archiver takes it while
    the tables are read) and the server version."""
    engine = create_sql_engine(ctx.settings)
    try:
        with (
            translate_sql_errors("marking the physical backup's restore point"),
            engine.connect() as holder,
            engine.connect() as reader,
        ):
            holder.execution_options(isolation_level="REPEATABLE READ")
            holder.begin()
            holder.execute(sa.text("SET LOCAL lock_timeout = '60s'"))
            quote = holder.dialect.identifier_preparer.quote
            for name in pg_table_names(holder):  # names from the live catalogue, quoted
                schema, _, table = name.partition(".")
                holder.execute(sa.text(f"LOCK TABLE {quote(schema)}.{quote(table)} IN SHARE MODE"))
            snapshot = str(holder.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one())
            lsn = str(
                holder.execute(
                    sa.text("SELECT pg_create_restore_point(:p)"), {"p": point}
                ).scalar_one()
            )
            walfile = str(
                holder.execute(
                    sa.text("SELECT pg_walfile_name(CAST(:lsn AS pg_lsn)), pg_switch_wal()"),
                    {"lsn": lsn},
                ).first()[0]  # type: ignore[index]
            )
            if not _SNAPSHOT_ID.match(snapshot):
                raise StewardError(f"unexpected snapshot id {snapshot!r} from the server")
            reader.execution_options(isolation_level="REPEATABLE READ")
            reader.begin()
            reader.execute(sa.text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            holder.rollback()  # the locks go; the reader keeps the snapshot
            version = str(reader.execute(sa.text("SHOW server_version")).scalar_one())
            tables = pg_fingerprint(reader)
            reader.rollback()
            return tables, lsn, walfile, version
    finally:
        engine.dispose()


def _wait_archived(ctx: BackupContext, walfile: str, timeout_s: float = 600) -> None:
    """Until the server's archiver pushed ``walfile`` (it archives oldest first), or fail."""
    engine = create_sql_engine(ctx.settings)
    deadline = time.monotonic() + timeout_s
    try:
        with translate_sql_errors("waiting for WAL archiving"), engine.connect() as conn:
            while True:
                last = conn.execute(sa.text("SELECT last_archived_wal FROM pg_stat_archiver"))
                done = str(last.scalar_one() or "")
                if done[:24] > walfile or done == walfile:
                    return
                if time.monotonic() > deadline:
                    raise StewardError(
                        f"WAL file {walfile} (the backup's restore point) was not archived "
                        f"within {timeout_s:g} s (last archived: {done or 'none'}): check the "
                        "server's archive_command (`steward backup physical status`)"
                    )
                conn.rollback()  # a fresh snapshot of the statistics
                time.sleep(0.05)
    finally:
        engine.dispose()


def physical_labels(ctx: BackupContext) -> set[str]:
    """Labels of the backups pgBackRest's repository holds now."""
    return set(physical_chain(ctx))


def physical_chain(ctx: BackupContext) -> dict[str, str]:
    """Label -> the label it depends on (its ``prior``; "" for a full backup)."""
    return {b["label"]: b.get("prior") or "" for b in info(ctx.settings).get("backup", [])}


def expire_physical(ctx: BackupContext, manifest: Manifest) -> None:
    """Remove one backup (and the WAL only it needed) from pgBackRest's repository."""
    label = manifest.physical.get("label")
    if label in physical_labels(ctx):
        pgbackrest(ctx.settings, "expire", f"--set={label}")


def verify_physical(ctx: BackupContext, manifest: Manifest) -> list[str]:
    """Restore into a scratch cluster, recover to the restore point, compare; the differences."""
    if manifest.physical.get("label") not in physical_labels(ctx):
        raise ConfigError(
            f"backup {manifest.id}: pgBackRest no longer holds {manifest.physical.get('label')} "
            "(removed from its repository); `steward backup prune` removes its manifest"
        )
    root = ctx.config.physical.scratch_dir or ctx.settings.home.resolve() / "spool"
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"pgverify-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o700)
    give_to_owner(ctx.settings, root, folder)
    cluster = _ScratchCluster(ctx, folder, _major(manifest.server_version))
    try:
        try:
            pgbackrest(
                ctx.settings, "restore", f"--set={manifest.physical['label']}",
                f"--pg1-path={folder}", "--type=name",
                f"--target={manifest.physical['restore_point']}",
                "--target-action=promote", "--archive-mode=off",
            )  # fmt: skip
            cluster.start()
        except (ConfigError, SourceUnavailable):
            raise
        except StewardError as exc:  # the repository's copy does not restore or start
            return [str(exc)]
        methods = {name: t.get("method", "") for name, t in manifest.tables.items()}
        return compare_fingerprints(manifest.tables, cluster.fingerprint(methods))
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def restore_to_time(ctx: BackupContext, when: datetime, target_dir: Path) -> dict[str, Any]:
    """Restore the cluster as it was at ``when`` into ``target_dir`` (new or empty), ready to
    start (recovery runs to ``when``, then promotes)."""
    if when.tzinfo is None:
        raise ConfigError(f"--to-time {when.isoformat()}: give a time zone (e.g. +00:00)")
    if target_dir.exists() and any(target_dir.iterdir()):
        raise ConfigError(f"--to {target_dir}: the folder is not empty; give a new or empty one")
    target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    give_to_owner(ctx.settings, target_dir)
    moment = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    pgbackrest(
        ctx.settings, "restore", f"--pg1-path={target_dir}", "--type=time",
        f"--target={moment}", "--target-action=promote", "--archive-mode=off",
    )  # fmt: skip
    return {"target": str(target_dir), "to_time": when.astimezone(UTC).isoformat()}


def physical_status(ctx: BackupContext) -> dict[str, Any]:
    """Backups (type, size), the recoverable window and WAL archiving health."""
    stanza = info(ctx.settings)
    backups = [
        {
            "label": b["label"],
            "type": b["type"],
            "started_at": datetime.fromtimestamp(b["timestamp"]["start"], UTC).isoformat(),
            "stopped_at": datetime.fromtimestamp(b["timestamp"]["stop"], UTC).isoformat(),
            "database_size": b["info"]["size"],
            "repository_size": b["info"]["repository"]["delta"],
        }
        for b in stanza.get("backup", [])
    ]
    archiver = _archiver(ctx)
    last = archiver.get("last_archived_time")
    failing = bool(
        archiver.get("last_failed_time") and (not last or archiver["last_failed_time"] > last)
    )
    return {
        "backups": backups,
        "recoverable_from": backups[0]["stopped_at"] if backups else None,
        "recoverable_to": last.isoformat() if last else None,
        "archive_lag_s": round((ctx.clock() - last).total_seconds(), 1) if last else None,
        "archiving_failing": failing,
    }


def describe_window(status: dict[str, Any]) -> str:
    """One line: the recoverable window (earliest and latest point in time) and WAL lag."""
    lag = status.get("archive_lag_s")
    line = (
        f"recoverable from {_moment(status.get('recoverable_from'))} "
        f"to {_moment(status.get('recoverable_to'))}; "
        f"WAL archive lag {'n/a' if lag is None else f'{lag:g} s'}"
    )
    return line + ("; WAL ARCHIVING IS FAILING" if status.get("archiving_failing") else "")


def _moment(value: Any) -> str:
    """An ISO time as ``2026-12-06 18:30:05 UTC``; "n/a" when unknown."""
    if not value:
        return "n/a"
    when = datetime.fromisoformat(str(value)).astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _archiver(ctx: BackupContext) -> dict[str, Any]:
    engine = create_sql_engine(ctx.settings)
    try:
        with translate_sql_errors("reading WAL archiving status"), engine.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM pg_stat_archiver")).mappings().one()
            return dict(row)
    finally:
        engine.dispose()


def _major(server_version: str) -> int:
    return int(server_version.split(".")[0].split()[0])


class _ScratchCluster:
    """A restored data folder started on its own port, for one verification."""

    def __init__(self, ctx: BackupContext, folder: Path, major: int) -> None:
        self.ctx = ctx
        self.folder = folder
        self.pg_ctl = str(Path(f"/usr/lib/postgresql/{major}/bin/pg_ctl"))
        self.port = _free_port()
        self.started = False

    def start(self) -> None:
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.folder} -c archive_mode=off"
        )
        argv = [self.pg_ctl, "-D", str(self.folder), "-l", str(self.folder / "server.log"),
                "-w", "-t", "300", "-o", options, "start"]  # fmt: skip
        done = run_as_owner(self.ctx.settings, argv, timeout=600)
        self.started = True
        if done.returncode != 0:
            log = (self.folder / "server.log").read_text(errors="replace").strip().splitlines()
            raise StewardError("the restored cluster did not start: " + " | ".join(log[-3:]))
        with self._connect() as conn:  # until recovery reached the restore point, promoted
            for _ in range(3000):
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                    return
                time.sleep(0.1)
        raise StewardError("the restored cluster never finished recovery (300 s)")

    def _connect(self) -> psycopg.Connection[Any]:
        url = sa.engine.make_url(self.ctx.settings.database_url)
        return psycopg.connect(
            host="127.0.0.1", port=self.port, dbname=url.database, user=url.username,
            password=url.password, connect_timeout=10, autocommit=True,
        )  # fmt: skip

    def fingerprint(self, methods: dict[str, str]) -> dict[str, dict[str, Any]]:
        url = sa.engine.make_url(self.ctx.settings.database_url).set(
            drivername="postgresql+psycopg", host="127.0.0.1", port=self.port
        )
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                return pg_fingerprint(conn, methods)
        finally:
            engine.dispose()

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                run_as_owner(
                    self.ctx.settings,
                    [self.pg_ctl, "-D", str(self.folder), "-m", "immediate", "-w", "stop"],
                    timeout=120,
                )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
