"""Physical backups with pgBackRest on a private cluster (``archive_mode = on``): full and
incremental backups verified by restoring them into a scratch cluster, point-in-time recovery
to a noted moment, and a damaged repository file that fails verification while retention
keeps the last good backup."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from steward.backup import (
    list_backups,
    open_backup_context,
    physical_status,
    prune_backups,
    setup_physical,
    take_physical_backup,
    verify_backup,
)
from steward.backup.fingerprint import pg_fingerprint
from steward.errors import BackupVerificationFailed
from tests.backup.conftest import fill_postgres
from tests.backup.test_backup_cli import _steward
from tests.conftest import service_missing
from tests.fixtures.private_servers import free_port


@pytest.fixture
def physical_base():
    """A folder the cluster's OS user owns: repository, configuration, scratch clusters."""
    if shutil.which("pgbackrest") is None:
        service_missing("pgbackrest (Debian package pgbackrest)")
    base = Path(tempfile.mkdtemp(prefix="steward-test-pgbr-"))
    owner = pwd.getpwnam("postgres")
    os.chown(base, owner.pw_uid, owner.pw_gid)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def physical(make_private_postgres, make_settings, physical_base):
    config = physical_base / "pgbackrest.conf"
    command = f"pgbackrest --config={config} --stanza=app archive-push %p"
    cluster = make_private_postgres(
        settings={"archive_mode": "on", "archive_command": f"'{command}'", "wal_level": "replica"}
    )
    url = cluster.create_database("shop")
    fill_postgres(url, customers=500)
    settings = make_settings(
        database__url=url,
        backup__physical__data_dir=str(cluster.data_dir),
        backup__physical__socket_dir=str(cluster.root),
        backup__physical__port=str(cluster.port),
        backup__physical__repo_path=str(physical_base / "repo"),
        backup__physical__config_file=str(config),
        backup__physical__scratch_dir=str(physical_base / "scratch"),
        backup__physical__cipher_pass="correct horse battery staple",
    )
    ctx = open_backup_context(settings)
    assert setup_physical(ctx) == command
    return cluster, ctx, url


def _write(url: str, sql: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(sql))
    engine.dispose()


def _fingerprint(url: str) -> dict:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = pg_fingerprint(conn)
    engine.dispose()
    return found


def test_full_and_incremental_backups_are_verified_by_restore(physical, tmp_path):
    _cluster, ctx, url = physical
    full = take_physical_backup(ctx, "full")
    assert full.physical["type"] == "full" and full.tables["public.customers"]["rows"] == 500
    assert verify_backup(ctx, full).good

    _write(url, "INSERT INTO orders (customer_id, total) SELECT id, 1 FROM customers")
    incr = _steward("physical", "run", "--type", "incr", cwd=tmp_path)  # as an operator would
    assert incr.returncode == 0, incr.stderr
    assert "(incr, pgBackRest" in incr.stdout and "verified by a restore" in incr.stdout
    [newest] = [m for m in list_backups(ctx.store, "backups") if m.id != full.id]
    assert newest.good and newest.tables["public.orders"]["rows"] == 1500

    listed = {b["id"]: b for b in json.loads(_steward("list", "--json", cwd=tmp_path).stdout)}
    assert listed[newest.id]["type"] == "incr" and listed[full.id]["type"] == "full"
    assert listed[newest.id]["repository_size"] == newest.physical["repository_size"] > 0
    assert listed[full.id]["recoverable_from"] == full.physical["stopped_at"]
    assert listed[newest.id]["recoverable_to"] and listed[newest.id]["archive_lag_s"] >= 0
    shown_list = _steward("list", cwd=tmp_path).stdout
    assert "physical (incr)" in shown_list and "physical (full)" in shown_list
    [window] = [line for line in shown_list.splitlines() if line.startswith("physical (pgB")]
    assert re.fullmatch(
        r"physical \(pgBackRest\): recoverable from \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC to "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; WAL archive lag [\d.]+ s",
        window,
    ), window
    shown = _steward("physical", "status", "--json", cwd=tmp_path)
    status = json.loads(shown.stdout)
    assert [b["type"] for b in status["backups"]] == ["full", "incr"]
    assert status["recoverable_from"] and status["recoverable_to"]
    assert status["archiving_failing"] is False
    assert "correct horse" not in shown.stdout + incr.stdout + incr.stderr
    assert not list(Path(ctx.config.physical.scratch_dir).iterdir())  # scratch removed
    from steward.health.database import check_database

    archiving = check_database(ctx.settings).stats
    assert archiving["failing"] == [] and archiving["wal_archiving"]["failing"] is False

    # Retention keeps only the newest here, and the full backup the incremental needs.
    strict = {"STEWARD_BACKUP__SQL_RETENTION__KEEP_DAILY": "1",
              "STEWARD_BACKUP__SQL_RETENTION__KEEP_WITHIN_HOURS": "0",
              "STEWARD_BACKUP__SQL_RETENTION__KEEP_LAST": "1"}  # fmt: skip
    pruned = json.loads(_steward("prune", "--json", cwd=tmp_path, env=strict).stdout)
    assert pruned["deleted"] == []
    assert {r["id"]: r["reason"] for r in pruned["kept"]}[full.id] == f"needed by {newest.id}"


def test_point_in_time_recovery_gives_exactly_the_noted_moment(physical, physical_base):
    cluster, ctx, url = physical
    take_physical_backup(ctx, "full")
    _write(url, "INSERT INTO orders (customer_id, total) SELECT id, 2 FROM customers")
    time.sleep(1.5)
    noted, expected = datetime.now(UTC), _fingerprint(url)
    time.sleep(1.5)
    _write(url, "INSERT INTO orders (customer_id, total) SELECT id, 3 FROM customers")
    _write(
        url, "DELETE FROM customers WHERE id > 400 AND id NOT IN (SELECT customer_id FROM orders)"
    )
    from steward.backup.pgbackrest import pgbackrest

    pgbackrest(ctx.settings, "check")  # the WAL past the noted moment is archived

    target = physical_base / "restored"
    done = _steward(
        "restore", "--to-time", noted.isoformat(), "--to", str(target), cwd=target.parent
    )
    assert done.returncode == 0, done.stderr
    assert f"into {target}" in " ".join(done.stdout.split())
    with started_copy(cluster, target) as restored_url:
        assert _fingerprint(restored_url) == expected
    assert _fingerprint(url) != expected  # the source moved on


@contextmanager
def started_copy(cluster, target: Path) -> Iterator[str]:
    """Start a restored data folder on its own port until it promoted; yields its shop URL."""
    port = free_port()
    options = f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={target}"
    pg_ctl = str(cluster.bin_dir / "pg_ctl")
    log = str(target / "log")
    cluster.run_as_owner([pg_ctl, "-D", str(target), "-l", log, "-w", "-o", options, "start"])
    try:
        restored_url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/shop"
        for _ in range(300):
            engine = sa.create_engine(restored_url)
            with engine.connect() as conn:
                in_recovery = conn.execute(sa.text("SELECT pg_is_in_recovery()")).scalar_one()
            engine.dispose()
            if not in_recovery:
                break
            time.sleep(0.5)
        yield restored_url
    finally:
        cluster.run_as_owner([pg_ctl, "-D", str(target), "-m", "immediate", "stop"])


def test_a_damaged_repository_file_fails_verification_and_retention_keeps_the_good(
    physical, make_settings
):
    _cluster, ctx, url = physical
    oldest = verify_backup(ctx, take_physical_backup(ctx, "full"))
    good = verify_backup(ctx, take_physical_backup(ctx, "full"))
    _write(url, "UPDATE customers SET balance = balance + 1")
    damaged = verify_backup(ctx, take_physical_backup(ctx, "full"))
    folder = Path(ctx.config.physical.repo_path) / "backup" / "app" / damaged.physical["label"]
    victim = max((p for p in folder.rglob("*") if p.is_file() and "pg_data/base" in str(p)),
                 key=lambda p: p.stat().st_size)  # fmt: skip
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))

    with pytest.raises(BackupVerificationFailed):
        verify_backup(ctx, damaged)
    assert not damaged.good and damaged.verifications[-1]["ok"] is False

    strict = open_backup_context(
        make_settings(
            backup__sql_retention__keep_daily="1",
            backup__sql_retention__keep_within_hours="0",
            backup__sql_retention__keep_last="1",
        )
    )
    report = prune_backups(strict)
    assert report.deleted_ids() == [oldest.id]  # pgBackRest expired it too
    kept = {row["id"]: row["reason"] for row in report.kept}
    assert "newest verified" in kept[good.id] and damaged.id in kept
    labels = {b["label"] for b in physical_status(ctx)["backups"]}
    assert labels == {good.physical["label"], damaged.physical["label"]}


def test_a_physical_backup_killed_outright_leaves_nothing_catalogued(physical, tmp_path):
    import signal
    import subprocess

    import psycopg

    from tests.backup.test_backup_cli import STEWARD

    cluster, ctx, url = physical
    blocker = psycopg.connect(url.replace("+psycopg", ""))
    blocker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")  # the mark step waits on it
    run = subprocess.Popen([STEWARD, "backup", "physical", "run"], cwd=tmp_path,
                           start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        with psycopg.connect(cluster.admin_url, autocommit=True) as watcher:
            for _ in range(1200):
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop' "
                    "AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%'"
                ).fetchone()
                if row and row[0]:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("the backup never reached its mark step")
        os.killpg(run.pid, signal.SIGKILL)  # after pgBackRest copied, before the manifest
        run.wait()
    finally:
        blocker.close()
    assert list_backups(ctx.store, "backups") == []

    good = verify_backup(ctx, take_physical_backup(ctx, "full"))
    assert [m.id for m in list_backups(ctx.store, "backups")] == [good.id] and good.good
    prune_backups(ctx)
    assert list(ctx.store.list("backups/_runs/")) == []  # the killed run's hold lapsed


def test_failing_wal_archiving_fails_the_health_check(
    make_private_postgres, make_settings, tmp_path
):
    import subprocess

    import psycopg

    from steward.health.database import check_database
    from tests.backup.test_backup_cli import STEWARD

    cluster = make_private_postgres(settings={"archive_mode": "on", "archive_command": "'false'"})
    url = cluster.create_database("shop")
    settings = make_settings(database__url=url, backup__physical__data_dir=str(cluster.data_dir))
    with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT 1 AS x")
        conn.execute("SELECT pg_switch_wal()")
        for _ in range(200):  # until the archiver tried (and failed) once
            if conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0]:  # type: ignore[index]
                break
            time.sleep(0.1)
    health = check_database(settings)
    assert health.stats["wal_archiving"]["failing"] is True
    [line] = health.stats["failing"]
    assert line.startswith("WAL archiving is failing") and line in health.stats["attention"]

    done = subprocess.run([STEWARD, "health"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "COLUMNS": "200"}, timeout=120)  # fmt: skip
    assert done.returncode == 1 and "WAL archiving is failing" in done.stdout


def test_the_backup_flow_takes_and_verifies_a_physical_backup_too(physical, prefect_harness):
    from flows.backup_databases import backup_databases

    _cluster, ctx, _url = physical
    summary = backup_databases(sources=["database"])
    assert set(summary["sources"]) == {"database", "cluster"}
    cluster = summary["sources"]["cluster"]
    assert cluster["engine"] == "physical" and cluster["verified"] is True
    assert cluster["size_bytes"] > 0 and summary["failed_verification"] == []
    [physical_backup] = [m for m in list_backups(ctx.store, "backups") if m.engine == "physical"]
    assert physical_backup.physical["type"] == "full"  # no full yet: pgBackRest took one
    assert cluster["type"] == "full" and cluster["database_size"] > 0
    assert cluster["recoverable_from"] and cluster["recoverable_to"]
    assert cluster["archive_lag_s"] >= 0 and cluster["window_problem"] is None

    from steward.health import OK, StepOutcome, build_report

    outcome = StepOutcome("backup-databases", OK, 9.0, summary, critical=True)
    page = build_report({"backup-databases": outcome}, {}, {}, title="night").markdown
    [kind] = [line for line in page.splitlines() if line.startswith("- physical (pgBackRest)")]
    assert re.fullmatch(r"- physical \(pgBackRest\): full backup, [\d.]+ \w+ stored "
                        r"\(database [\d.]+ \w+\)", kind), kind  # fmt: skip
    [window] = [line for line in page.splitlines() if line.startswith("- recoverable window")]
    assert re.fullmatch(r"- recoverable window: \S+ \S+ UTC to \S+ \S+ UTC, WAL archive lag "
                        r"\d+ s", window), window  # fmt: skip
