"""The flows analyse exactly what they changed or are about to read, and say so in their
``{flow}-statistics`` artifact: warm-cache and validate-data before reading never-analysed
tables, archive-to-s3 after removing a large share of a table (and only then),
restore-archive and restore-backup after putting rows back; `steward demo-data` after loading.
Autovacuum is off on every table (storage parameter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.archive_to_s3 import archive_to_s3
from flows.backup_databases import backup_databases
from flows.restore_archive import restore_archive
from flows.restore_backup import restore_backup
from flows.validate_data import validate_data
from flows.warm_cache import warm_cache
from steward.archive import manifest
from steward.migrations import MigrationRunner
from steward.storage import create_sql_engine
from tests.planner.conftest import analyze_counts, autovacuum_off, wait_for_stats

pytestmark = pytest.mark.usefixtures("prefect_harness")
STEWARD = str(Path(sys.executable).parent / "steward")


def test_warm_cache_analyses_the_never_analysed_tables_it_reads_first(
    demo_db, redis_url, redis_client, make_settings, run_flow
):
    settings, engine = demo_db
    make_settings(cache__url=redis_url)
    summary, artifacts = run_flow(warm_cache, warmers=["product-detail"])

    [stats] = summary["statistics"]
    assert {"public.products", "public.prices", "public.inventory"} == set(stats["analyzed"])
    assert summary["keys"]["product-detail"] > 0
    counts = analyze_counts(engine)
    assert counts["products"] == counts["prices"] == counts["inventory"] == 1
    assert counts["orders"] == 0  # product-detail does not read orders: left alone
    note = artifacts["warm-cache-statistics"]["data"]
    assert "public.prices: analysed" in note and "never analysed" in note


def test_validate_data_analyses_the_suite_tables_before_reading(demo_db, run_flow):
    _settings, engine = demo_db
    summary, artifacts = run_flow(validate_data, suites=["orders"], docs=False, scrub_objects=0)
    [stats] = summary["statistics"]
    assert "public.orders" in stats["analyzed"]
    assert analyze_counts(engine)["orders"] == 1
    assert "public.orders: analysed" in artifacts["validate-data-statistics"]["data"]


@pytest.fixture
def archive_db(demo_db, make_settings):
    """Two append-only tables, analysed once: 30 % of ``events`` and 5 % of ``notes`` are
    past a 365-day retention."""
    settings, engine = demo_db
    with engine.begin() as conn:
        for name, old in (("events", 3), ("notes", 0.5)):
            conn.exec_driver_sql(
                f"CREATE TABLE {name} (id bigint PRIMARY KEY, at timestamptz NOT NULL, "
                "body text) WITH (autovacuum_enabled = false)"
            )
            conn.exec_driver_sql(
                f"INSERT INTO {name} SELECT g, CASE WHEN g %% 100 < {old * 10} "
                "THEN now() - interval '500 days' ELSE now() END, 'x' "
                "FROM generate_series(1, 10000) g"
            )
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    # PostgreSQL 15 counts a transaction's inserts when its backend flushes them, up to 10 s
    # after the commit, and an ANALYZE at once: inserts flushed after the ANALYZE count as
    # changed since it (the flow would call both tables stale). So the inserts are flushed at
    # their commit, then both tables analysed and that flushed too.
    with engine.begin() as conn:
        for name in ("events", "notes"):
            conn.exec_driver_sql(f"ANALYZE {name}")
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    for name in ("events", "notes"):
        wait_for_stats(engine, name, 1)
    policies = [
        {"table": t, "rule": "older_than", "column": "at", "retention_days": 365}
        for t in ("events", "notes")
    ]
    return make_settings(archive__policies=json.dumps(policies)), engine


def test_archive_analyses_tables_it_emptied_by_more_than_the_share_then_restore(
    archive_db, run_flow
):
    settings, engine = archive_db
    summary, artifacts = run_flow(archive_to_s3)

    assert summary["tables"]["events"]["rows"] == 3000
    assert summary["tables"]["notes"]["rows"] == 500
    before, after = summary["statistics"]
    assert before["analyzed"] == []  # both were analysed and unchanged: nothing to refresh
    assert after["analyzed"] == ["public.events"]  # 30 % removed; notes lost 5 % (< 10 %)
    wait_for_stats(engine, "events", 2)
    counts = analyze_counts(engine)
    assert counts["events"] == 2 and counts["notes"] == 1
    note = artifacts["archive-to-s3-statistics"]["data"]
    assert "public.events: analysed" in note and "3,000 of 10,000 rows (30%" in note

    with engine.connect() as conn:
        entry = manifest.entries(conn, table="events", states=[manifest.COMPLETE])[0]
    restored, artifacts = run_flow(restore_archive, batch_id=entry.batch_id)
    assert restored["restored"] == entry.rows
    assert restored["statistics"][0]["analyzed"] == ["public.events"]
    wait_for_stats(engine, "events", 3)
    assert analyze_counts(engine)["events"] == 3
    assert "restore-archive put back" in artifacts["restore-archive-statistics"]["data"]


def test_restore_backup_analyses_every_restored_table(make_settings, make_pg_database, run_flow):
    source = make_pg_database()
    settings = make_settings(database__url=source, backup__sources='["database"]')
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    backup_databases()
    target = make_pg_database(install=False)  # a new, empty database
    done, artifacts = run_flow(restore_backup, target=target)

    analyzed = set(done["statistics"][0]["analyzed"])
    assert {"public.orders", "public.products", "public.alembic_version"} <= analyzed
    restored = create_sql_engine(settings, url=target)
    wait_for_stats(restored, "orders", 1)
    assert analyze_counts(restored)["orders"] == 1
    restored.dispose()
    assert "restored from backup" in artifacts["restore-backup-statistics"]["data"]


def test_demo_data_command_analyses_the_tables_it_filled(make_pg_database, tmp_path):
    url = make_pg_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    env |= {
        "STEWARD_HOME": str(tmp_path),
        "STEWARD_DATABASE__URL": url,
        "STEWARD_MIGRATIONS__ALEMBIC": "example",
    }
    engine = sa.create_engine(url)
    subprocess.run([STEWARD, "migrate"], env=env, check=True, capture_output=True, timeout=300)
    autovacuum_off(engine)

    done = subprocess.run(
        [STEWARD, "demo-data", "--rows", "3000"], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "public.products: analysed" in done.stdout
    wait_for_stats(engine, "products", 1)
    counts = analyze_counts(engine)
    assert counts["products"] == counts["orders"] == counts["order_items"] == 1
    engine.dispose()


def test_cache_warm_command_analyses_before_reading(demo_db, redis_url, redis_client, tmp_path):
    settings, engine = demo_db
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    env |= {
        "STEWARD_HOME": str(tmp_path),
        "STEWARD_DATABASE__URL": settings.database_url,
        "STEWARD_CACHE__URL": redis_url,
        "STEWARD_STATISTICS__MIN_ROWS": "500",
    }
    done = subprocess.run(
        [STEWARD, "cache", "warm", "-w", "product-detail"], env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "before cache warm reads: public.prices: analysed" in done.stdout
    wait_for_stats(engine, "prices", 1)
    assert analyze_counts(engine)["prices"] == 1


def test_statistics_never_fail_the_run_they_serve(make_settings, run_flow):
    from prefect import flow

    from tasks.statistics import analyze_changed_tables

    make_settings()

    @flow(name="statistics-probe")
    def probe() -> dict:
        unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
        return analyze_changed_tables({"orders": "restored"}, "after restore", unreachable)

    report, _ = run_flow(probe)
    assert report["analyzed"] == [] and report["note"].startswith("statistics not checked:")
    assert report["lines"] == [f"- after restore: {report['note']}"]
