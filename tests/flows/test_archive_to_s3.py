"""Flows ``archive-to-s3`` and ``restore-archive`` under Prefect, on PostgreSQL and moto S3:
dry run, a real run with its artifacts, a bad table name, and a restore by batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
import sqlalchemy as sa

from flows.archive_to_s3 import ArchiveParams, archive_to_s3
from flows.restore_archive import RestoreParams, restore_archive
from steward.archive import manifest
from steward.demo_data import generate_demo_data
from steward.errors import ConfigError
from steward.migrations import MigrationRunner
from steward.storage.sql import create_sql_engine

pytestmark = pytest.mark.usefixtures("prefect_harness")
NOW = datetime.now(UTC)
TABLES = ["audit_log", "inventory_movements", "outbox"]


@pytest.fixture
def app(make_settings, make_pg_database, s3_url, moto_endpoint):
    settings = make_settings(
        database__url=make_pg_database(), objects__url=s3_url, objects__endpoint_url=moto_endpoint
    )
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    generate_demo_data(settings, rows=800, seed=5, now=NOW)
    engine = create_sql_engine(settings)
    yield settings, engine
    engine.dispose()


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def _objects(settings) -> list[str]:
    bucket, _, prefix = settings.objects.url.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", endpoint_url=settings.objects.endpoint_url, region_name="us-east-1")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/archive/")
    return [item["Key"] for item in listing.get("Contents", [])]


def test_archive_flow_dry_run_then_run_then_restore(app, run_flow):
    settings, engine = app
    before = _counts(engine)

    dry = archive_to_s3(ArchiveParams(tables=TABLES, dry_run=True))
    assert dry["dry_run"] is True and dry["rows"] > 0 and dry["estimated_bytes"] > 0
    assert _counts(engine) == before and _objects(settings) == []

    summary, artifacts = run_flow(archive_to_s3, ArchiveParams(tables=TABLES, batch_size=10))
    assert summary["rows_archived"] == dry["rows"]
    assert summary["rows_still_qualifying"] == 0
    assert {t: before[t] - n for t, n in _counts(engine).items()} == {
        t: summary["tables"][t]["rows_archived"] for t in TABLES
    }
    keys = _objects(settings)
    assert len(keys) == summary["objects"] and all(k.endswith(".parquet") for k in keys)
    assert all("/archive/app/" in k and "/dt=" in k for k in keys)
    assert artifacts["archive-progress"]["data"] == 100.0
    table = artifacts["archive-summary"]["data"]
    rows = json.loads(table) if isinstance(table, str) else table
    assert {r["table"]: r["rows archived"] for r in rows} == {
        t: summary["tables"][t]["rows_archived"] for t in TABLES
    }

    with engine.connect() as conn:
        entry = manifest.entries(conn, table="outbox", states=[manifest.COMPLETE])[0]
    restored = restore_archive(RestoreParams(batch_id=entry.batch_id))
    assert restored["status"] == "complete" and restored["restored"] == entry.rows
    assert (
        _counts(engine)["outbox"]
        == before["outbox"] - summary["tables"]["outbox"]["rows_archived"] + entry.rows
    )
    again = restore_archive(RestoreParams(table="outbox", keys=[entry.key_min]))
    assert again["restored"] == 0 and again["conflicts"] == 1


def test_archive_flow_names_an_unknown_table_and_changes_nothing(app):
    settings, engine = app
    before = _counts(engine)
    with pytest.raises(ConfigError, match="'customers'"):
        archive_to_s3(ArchiveParams(tables=["outbox", "customers"]))
    assert _counts(engine) == before and _objects(settings) == []
