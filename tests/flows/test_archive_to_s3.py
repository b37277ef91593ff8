"""Flows ``archive-to-s3`` and ``restore-archive`` under Prefect, on PostgreSQL and moto S3:
dry run, a real run with its artifacts, a bad table name, and a restore by batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
import sqlalchemy as sa
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema

from flows.archive_to_s3 import archive_to_s3
from flows.restore_archive import restore_archive
from flows.tier_archives import tier_archives
from steward.archive import manifest
from steward.archive.restore_report import IN_SOURCE
from steward.demo import generate_demo_data
from steward.errors import ConfigError
from steward.migrations import MigrationRunner
from steward.storage import create_sql_engine

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

    dry = archive_to_s3(tables=TABLES, dry_run=True)
    assert dry["dry_run"] is True and dry["rows"] > 0 and dry["estimated_bytes"] > 0
    assert _counts(engine) == before and _objects(settings) == []

    summary, artifacts = run_flow(archive_to_s3, tables=TABLES, batch_size=10)
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
    restored = restore_archive(batch_id=entry.batch_id)
    assert restored["status"] == "complete" and restored["restored"] == entry.rows
    assert (
        _counts(engine)["outbox"]
        == before["outbox"] - summary["tables"]["outbox"]["rows_archived"] + entry.rows
    )
    # The restored rows left the archive: asked again, the key is reported back in the source.
    again = restore_archive(table="outbox", keys=[entry.key_min])
    assert again["restored"] == 0 and again["not_restored"] == {str(entry.key_min): IN_SOURCE}


def test_restore_by_key_explains_every_key_it_did_not_restore(app, run_flow):
    """Keys inside an archived batch's key range that are live rows, never archived, or
    exist again: each is reported with why (restore-archive -p keys='[42, 43]' said nothing)."""
    settings, engine = app
    archive_to_s3(tables=["outbox"], batch_size=10)
    with engine.connect() as conn:
        done = manifest.entries(conn, table="outbox", states=[manifest.COMPLETE])
        present = {int(r[0]) for r in conn.execute(sa.text("SELECT seq FROM outbox"))}
    live = next(k for k in sorted(present) if any(e.holds_key(k) for e in done))
    archived = done[0].key_min
    absent = 10**9

    summary, artifacts = run_flow(restore_archive, table="outbox", keys=[live, archived, absent])
    assert summary["restored"] == 1 and summary["not_restored_count"] == 2
    assert summary["not_restored"] == {
        str(live): IN_SOURCE,
        str(absent): "not in the source and in no archive object (never archived, or "
        "deleted outright)",
    }
    assert summary["missing_keys"] == [str(live), str(absent)]
    assert f"`{live}`" in artifacts["restore-not-restored"]["data"]

    again = restore_archive(table="outbox", keys=[archived, live])
    assert again["restored"] == 0
    assert again["not_restored"] == {str(archived): IN_SOURCE, str(live): IN_SOURCE}


def test_archive_flow_names_an_unknown_table_and_changes_nothing(app):
    settings, engine = app
    before = _counts(engine)
    with pytest.raises(ConfigError, match="'customers'"):
        archive_to_s3(tables=["outbox", "customers"])
    with pytest.raises(ParameterTypeError, match="batch_size.*greater than or equal to 1"):
        archive_to_s3(tables=["outbox"], batch_size=0)
    assert _counts(engine) == before and _objects(settings) == []


def test_orders_leave_with_children_and_the_summary_names_kept_rows(app, run_flow):
    settings, engine = app
    with engine.connect() as conn:
        items = conn.execute(sa.text("SELECT count(*) FROM order_items")).scalar_one()
    summary, artifacts = run_flow(archive_to_s3, tables=["users", "orders"])
    orders, users = summary["tables"]["orders"], summary["tables"]["users"]
    assert orders["rows"] > 0 and orders["children"]["order_items"] > 0
    assert orders["bytes"] > 0 and "kept" in orders and "kept_reason" in orders
    assert users["kept"] > 0 and "orders.user_id" in users["kept_reason"]
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM order_items")).scalar_one()
    assert left == items - orders["children"]["order_items"]
    notes = artifacts["archive-notes"]["data"]
    assert "**users**" in notes and "orders.user_id" in notes
    assert artifacts["archive-progress"]["data"] == 100.0


def test_flow_parameters_are_typed_top_level_fields_with_descriptions():
    for flow, names in [
        (archive_to_s3, {"tables", "dry_run", "batch_size", "max_batches", "time_budget_seconds"}),
        (restore_archive, {"table", "keys", "batch_id", "time_from", "time_to", "overwrite"}),
        (tier_archives, {"dry_run", "mode", "include_deep_archive", "prefix", "batch_size"}),
    ]:
        properties = parameter_schema(flow).model_dump()["properties"]
        assert names <= set(properties)
        assert all(properties[name].get("description") for name in names), flow.name
    assert archive_to_s3.validate_parameters({"tables": ["users"]})["tables"] == ["users"]
