"""Row versions a transaction started after the read could carry too (xid wraparound) no
longer vouch for their rows: such rows stay in the source and out of the objects, the rest
leave, and a later run archives them. In a cluster that never wrapped, a transaction running
across the read makes every version written after it doubtful; PostgreSQL shows that window
for real here, which wraparound itself (4 billion transactions) cannot be made to."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from steward.archive import manifest, xid_window
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources

from .conftest import archived_keys, assert_each_row_once, snapshot, snapshots

ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
WRAP = 2**32


def test_versions_equal_to_an_id_handed_out_since_the_read_modulo_2_32_are_doubtful():
    since = 3 * WRAP + 100  # epoch 3
    assert xid_window.reused([99, 100, 149, 150, 7], since, since + 50) == {100, 149}
    edge = WRAP - 10  # the window wraps: ids 2**32-10 … 2**32+9 are 32-bit ...-10 … 9
    assert xid_window.reused([WRAP - 11, WRAP - 5, 5, 9, 10], edge, edge + 20) == {WRAP - 5, 5, 9}
    assert xid_window.reused([1, 2, 3], 5, 5 + WRAP) == {1, 2, 3}  # every id handed out


def _hold_an_id(url: str) -> psycopg.Connection:
    """Another session in a transaction with an id: every id handed out after it counts as
    'since the read' for reads taken while it runs."""
    held = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    held.execute("SELECT pg_current_xact_id()")
    return held


@ON_POSTGRES
def test_rows_written_after_a_running_transaction_began_stay_until_a_later_run(
    app_settings, contexts
):
    settings = app_settings(archive__batch_size=10)
    ctx = contexts(settings)
    before = snapshots(ctx, ("outbox",))
    held = _hold_an_id(settings.database.url.get_secret_value())
    try:
        with ctx.sql.begin() as conn:  # a no-op update: a new version, the row still qualifies
            touched = conn.execute(
                sa.text("UPDATE outbox SET payload = payload WHERE seq IN "
                        "(SELECT min(seq) FROM outbox UNION SELECT max(seq) FROM outbox "
                        "WHERE published_at IS NOT NULL) RETURNING seq")
            ).scalars().all()  # fmt: skip
        report = archive_table(ctx, open_sources(ctx, ["outbox"])[0])
        present = set(snapshot(ctx, "outbox").rows)
        archived = set(archived_keys(ctx, "outbox"))
        assert report.rows_archived > 0 and touched
        assert {k for k in present if k in {*touched}} == {*touched} & set(before["outbox"].rows)
        assert not archived & {*touched}  # kept: in the source, not in any object
        with ctx.sql.connect() as conn:
            assert all(
                e.state in (manifest.COMPLETE, manifest.ABANDONED)
                for e in manifest.entries(conn, table="outbox")
            )
    finally:
        held.close()
    rerun = contexts(settings)
    archive_table(rerun, open_sources(rerun, ["outbox"])[0])
    assert_each_row_once(ctx, before)
    still = set(snapshot(ctx, "outbox").rows) & set(touched)
    leaving = set(archived_keys(ctx, "outbox")) & set(touched)
    assert still | leaving == set(touched) and leaving  # archived now that nothing holds them


@ON_POSTGRES
def test_an_aggregate_whose_child_was_written_after_a_running_transaction_stays(
    app_settings, contexts
):
    settings = app_settings(archive__batch_size=50)
    ctx = contexts(settings)
    tables = ("orders", "order_items", "payments", "inventory_reservations")
    before = snapshots(ctx, tables)
    (orders,) = open_sources(ctx, ["orders"])
    candidates = orders.count()
    assert candidates >= 2
    held = _hold_an_id(settings.database.url.get_secret_value())
    try:
        with ctx.sql.begin() as conn:  # one archivable order's item gets a new version
            (order_id,) = conn.execute(
                sa.select(orders.key).where(orders._qualifies).order_by(orders.key).limit(1)
            ).one()
            conn.execute(
                sa.text("UPDATE order_items SET quantity = quantity WHERE order_id = :o"),
                {"o": order_id},
            )
        report = archive_table(ctx, orders)
        assert report.rows_archived == candidates - 1
        assert order_id in set(snapshot(ctx, "orders").rows)
        assert order_id not in set(archived_keys(ctx, "orders"))
    finally:
        held.close()
    rerun = contexts(settings)
    archive_table(rerun, open_sources(rerun, ["orders"])[0])
    assert order_id in set(archived_keys(ctx, "orders"))
    assert_each_row_once(ctx, before)
