"""Tables in parallel (``archive.concurrency``), and runs that overlap: two runs started at
once on the same tables archive every row exactly once, without an error — a table another
run holds is left to that run and reported ``busy``."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from steward.archive.runner import archive_policies
from steward.archive.sources import open_sources

from .conftest import assert_each_row_once, duckdb_query, snapshots

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
TABLES = ("users", "audit_log", "outbox", "orders")
CHECKED = (*TABLES, "order_items", "payments", "inventory_reservations")


def _advisory_locks(ctx) -> int:
    with ctx.sql.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                    "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar_one()
        )


def test_tables_are_archived_at_once_each_by_one_run(app_settings, contexts):
    settings = app_settings(rows=400, archive__batch_size=5, archive__concurrency=2)
    held: list[int] = []

    def hook(point: str) -> None:
        if point == "object_verified":
            held.append(_advisory_locks(ctx))

    ctx = contexts(settings, hook=hook)
    before = snapshots(ctx, CHECKED)
    reports = archive_policies(ctx, open_sources(ctx, TABLES))

    assert [r.table for r in reports] == list(TABLES) and not any(r.busy for r in reports)
    assert max(held) == 2  # two tables' locks at once, never more
    assert_each_row_once(ctx, before)


def test_two_runs_at_once_on_the_same_tables_archive_every_row_once(app_settings, contexts):
    settings = app_settings(rows=400, archive__batch_size=5, archive__concurrency=2)
    first = contexts(settings)
    before = snapshots(first, CHECKED)
    reports: dict[str, list] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def slow(point: str) -> None:
        if point == "object_verified":
            time.sleep(0.02)  # long enough runs that the two overlap on every table

    def run(name: str) -> None:
        try:
            ctx = contexts(settings, hook=slow)
            sources = open_sources(ctx, TABLES)
            start.wait()
            reports[name] = archive_policies(ctx, sources)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    both = reports["a"] + reports["b"]
    assert any(r.busy for r in both)  # they did overlap
    for table in TABLES:
        mine = [r for r in both if r.table == table]
        assert len(mine) == 2 and sum(not r.busy for r in mine) >= 1
    left = len(before["users"].rows) - len(snapshots(first, ("users",))["users"].rows)
    assert sum(r.rows_archived for r in both if r.table == "users") == left
    assert_each_row_once(first, before)
    users = duckdb_query(first, "SELECT id FROM read_parquet('{archive}/app/users/dt=*/*.parquet')")
    assert len(users) == len(set(users)) == left
