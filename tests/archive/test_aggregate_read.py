"""PostgreSQL: a batch's roots and children are read in one snapshot (REPEATABLE READ), by the
roots' keys within their range. A child added, moved or changed after the roots were read is
not in the batch; the guarded delete sees the difference and keeps those aggregates whole in
the database and out of the published objects, which hold every other row once. A batch holds
about ``AGGREGATE_ROWS`` rows with its children, however large the batch size."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from steward.archive import manifest, sql_source
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources

from .conftest import NOW, assert_each_row_once, duckdb_query, snapshots

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
AGGREGATE = ("orders", "order_items", "payments", "inventory_reservations")
CUTOFF = NOW - timedelta(days=90)
ITEMS = "SELECT id, order_id FROM read_parquet('{archive}/app/orders/order_items/dt=*/*.parquet')"
ORDERS = "SELECT id FROM read_parquet('{archive}/app/orders/dt=*/*.parquet')"


def _first_batch_orders(ctx, limit: int) -> list[int]:
    """Old orders with items, among the first batch's roots."""
    query = sa.text(
        "SELECT id FROM orders WHERE deleted_at IS NOT NULL AND deleted_at < :c "
        "AND EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = orders.id) "
        "ORDER BY id LIMIT :n"
    )
    with ctx.sql.connect() as conn:
        return [int(r[0]) for r in conn.execute(query, {"c": CUTOFF, "n": limit})]


def _change_children(ctx, added: int, moved_from: int, moved_to: int, changed: int) -> None:
    """Another session adds, moves and changes children of the batch's roots (committed)."""
    with ctx.sql.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO order_items (id, order_id, product_id, quantity, unit_price) "
                "SELECT max(id) + 1, :o, min(product_id), 1, 1.00 FROM order_items"
            ),
            {"o": added},
        )
        conn.execute(
            sa.text(
                "UPDATE order_items SET order_id = :t "
                "WHERE id = (SELECT min(id) FROM order_items WHERE order_id = :f)"
            ),
            {"t": moved_to, "f": moved_from},
        )
        conn.execute(
            sa.text("UPDATE order_items SET quantity = quantity + 1 WHERE order_id = :o"),
            {"o": changed},
        )


def test_children_changed_after_the_roots_were_read_keep_their_aggregates(app_settings, contexts):
    settings = app_settings(archive__batch_size=1000)
    ctx = contexts(settings)
    before = snapshots(ctx, AGGREGATE)
    touched = _first_batch_orders(ctx, 4)
    (orders,) = open_sources(ctx, ["orders"])
    old = orders.count()
    _child, items = orders.parts["order_items"]
    read = items.read
    isolation: list[str] = []

    def read_after_a_change(conn, where, limit=None):
        if not isolation:  # the first batch: its roots are read, its children not yet
            isolation.append(conn.execute(sa.text("SHOW transaction_isolation")).scalar_one())
            _change_children(ctx, *touched)
        return read(conn, where, limit)

    items.read = read_after_a_change  # type: ignore[method-assign]

    report = archive_table(ctx, orders)

    assert isolation == ["repeatable read"]
    assert report.rows_skipped == 4 and report.rows_archived == old - 4
    with ctx.sql.connect() as conn:
        present = set(conn.execute(sa.text("SELECT id FROM orders")).scalars())
        items_now = dict(conn.execute(sa.text("SELECT id, order_id FROM order_items")).all())
    assert set(touched) <= present
    archived_items = duckdb_query(ctx, ITEMS)
    assert len(archived_items) == len({key for key, _ in archived_items})  # each row once
    assert not {key for key, _ in archived_items} & set(items_now)  # none that stayed
    assert not {parent for _, parent in archived_items} & set(touched)
    assert not {key for (key,) in duckdb_query(ctx, ORDERS)} & set(touched)
    assert max(items_now) not in before["order_items"].rows  # the added child stayed
    assert_each_row_once(ctx, before)


def test_a_batch_holds_about_aggregate_rows_with_its_children(app_settings, contexts, monkeypatch):
    monkeypatch.setattr(sql_source, "AGGREGATE_ROWS", 60)
    settings = app_settings(rows=6000, archive__batch_size=1000)
    ctx = contexts(settings)
    before = snapshots(ctx, AGGREGATE)
    (orders,) = open_sources(ctx, ["orders"])
    old = orders.count()

    report = archive_table(ctx, orders)

    with ctx.sql.connect() as conn:
        entries = manifest.entries(conn, table="orders")
    held = [entry.rows + sum(part.rows for part in entry.parts) for entry in entries]
    # The first batch counts on one child per child table (4 rows per root); the next ones on
    # as many rows per root as the batch before had.
    assert entries[0].rows == 60 // 4
    assert report.rows_archived == old == sum(entry.rows for entry in entries) > 3 * 15
    assert len(entries) > 2 and max(held[1:]) < 2 * 60
    assert_each_row_once(ctx, before)
