"""Row versions that a transaction the read could not see might carry too (xid wraparound) no
longer vouch for their rows: such rows stay in the source and out of the objects, the rest
leave, and a later run archives them. Wraparound itself (4 billion transactions) cannot be
produced here, so the tests give a read snapshot a running transaction whose id, modulo 2**32,
equals a version the batch reads — what a wrapped cluster would show — and check on real
PostgreSQL that a transaction running across the read sets nothing aside by itself."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from steward.archive import manifest, xid_window
from steward.archive.batch import ReadSnapshot
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources

from .conftest import archived_keys, assert_each_row_once, snapshot, snapshots

ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
WRAP = 2**32


def test_versions_equal_to_an_unseen_transaction_modulo_2_32_are_doubtful():
    snap = ReadSnapshot(xmax=3 * WRAP + 100, running=(3 * WRAP + 90,))  # epoch 3
    assert xid_window.reused([99, 100, 149, 150, 90, 7], snap, snap.xmax + 50) == {100, 149, 90}
    edge = ReadSnapshot(xmax=WRAP - 10)  # ids 2**32-10 … 2**32+9 are 32-bit 2**32-10 … 9
    assert xid_window.reused([WRAP - 11, WRAP - 5, 5, 9, 10], edge, WRAP + 10) == {
        WRAP - 5,
        5,
        9,
    }
    assert xid_window.reused([1, 2, 3], ReadSnapshot(5), 5 + WRAP) == {1, 2, 3}


def _touch(ctx, statement: str, **params: Any) -> int:
    """Run an UPDATE in its own transaction; the 32-bit id that wrote the new versions."""
    with ctx.sql.begin() as conn:
        conn.execute(sa.text(statement), params)
        return int(conn.execute(sa.text("SELECT pg_current_xact_id()::text::bigint")).scalar_one())


def _wrapped_onto(monkeypatch, version: int) -> None:
    """Reads see a running transaction whose id is ``version`` one epoch later."""
    real = xid_window.read_snapshot

    def snapshot_with_alias(conn: Any) -> ReadSnapshot:
        seen = real(conn)
        return ReadSnapshot(seen.xmax, (*seen.running, version % WRAP + WRAP * 5))

    monkeypatch.setattr(xid_window, "read_snapshot", snapshot_with_alias)


@ON_POSTGRES
def test_rows_whose_version_an_unseen_transaction_shares_stay_until_a_later_run(
    app_settings, contexts, monkeypatch
):
    settings = app_settings(archive__batch_size=10)
    ctx = contexts(settings)
    before = snapshots(ctx, ("outbox",))
    with ctx.sql.connect() as conn:
        touched = set(
            conn.execute(
                sa.text(
                    "SELECT seq FROM outbox WHERE published_at IS NOT NULL ORDER BY seq LIMIT 3"
                )
            ).scalars()
        )
    version = _touch(
        ctx, "UPDATE outbox SET payload = payload WHERE seq = ANY(:s)", s=list(touched)
    )
    _wrapped_onto(monkeypatch, version)

    report = archive_table(ctx, open_sources(ctx, ["outbox"])[0])

    assert report.rows_archived > 0
    assert touched <= set(snapshot(ctx, "outbox").rows)  # kept: in the source ...
    assert not touched & set(archived_keys(ctx, "outbox"))  # ... and in no object
    with ctx.sql.connect() as conn:
        states = {e.state for e in manifest.entries(conn, table="outbox")}
    assert states <= {manifest.COMPLETE, manifest.ABANDONED}
    monkeypatch.undo()
    rerun = contexts(settings)
    archive_table(rerun, open_sources(rerun, ["outbox"])[0])
    assert touched <= set(archived_keys(ctx, "outbox"))
    assert_each_row_once(ctx, before)


@ON_POSTGRES
def test_an_aggregate_whose_child_version_an_unseen_transaction_shares_stays(
    app_settings, contexts, monkeypatch
):
    settings = app_settings(archive__batch_size=50)
    ctx = contexts(settings)
    tables = ("orders", "order_items", "payments", "inventory_reservations")
    before = snapshots(ctx, tables)
    (orders,) = open_sources(ctx, ["orders"])
    candidates = orders.count()
    with ctx.sql.connect() as conn:
        order_id = conn.execute(
            sa.select(orders.key).where(orders._qualifies).order_by(orders.key).limit(1)
        ).scalar_one()
    version = _touch(
        ctx, "UPDATE order_items SET quantity = quantity WHERE order_id = :o", o=order_id
    )
    _wrapped_onto(monkeypatch, version)

    report = archive_table(ctx, orders)

    assert candidates >= 2 and report.rows_archived == candidates - 1
    assert order_id in set(snapshot(ctx, "orders").rows)
    assert order_id not in set(archived_keys(ctx, "orders"))
    monkeypatch.undo()
    rerun = contexts(settings)
    archive_table(rerun, open_sources(rerun, ["orders"])[0])
    assert order_id in set(archived_keys(ctx, "orders"))
    assert_each_row_once(ctx, before)


@ON_POSTGRES
def test_a_transaction_running_across_the_read_sets_nothing_aside(app_settings, contexts):
    """Rows written just before the read, while another session holds an older transaction
    open, still leave: their versions were committed before the read."""
    settings = app_settings(archive__batch_size=10)
    ctx = contexts(settings)
    before = snapshots(ctx, ("outbox",))
    held = psycopg.connect(settings.database.url.get_secret_value().replace("+psycopg", ""))
    try:
        held.execute("SELECT pg_current_xact_id()")  # an id, running across the whole run
        _touch(ctx, "UPDATE outbox SET payload = payload WHERE published_at IS NOT NULL")
        qualifying = open_sources(ctx, ["outbox"])[0].count()
        report = archive_table(ctx, open_sources(ctx, ["outbox"])[0])
        assert qualifying > 0 and report.rows_archived == qualifying
    finally:
        held.close()
    assert_each_row_once(ctx, before)
