"""PostgreSQL: an aggregate's children leave with one DELETE per child table per span of roots
(checked against the archived children and their row versions), and any difference — a child
deleted, moved to another order, changed or added meanwhile — keeps exactly the roots
concerned whole, through the exact row-by-row path. The published objects hold exactly what
left; a final object whose copy the store checksums differently is never completed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pyarrow as pa
import pytest
import sqlalchemy as sa

from steward.archive import manifest, sql_rows
from steward.archive.runner import archive_table
from steward.archive.sources import open_sources
from steward.errors import ArchiveVerificationFailed

from .conftest import NOW, archived_keys, assert_each_row_once, snapshot, snapshots

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
AGGREGATE = ("orders", "order_items", "payments", "inventory_reservations")
CUTOFF = NOW - timedelta(days=90)


def _old_orders(ctx) -> list[int]:
    with ctx.sql.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id FROM orders WHERE deleted_at IS NOT NULL AND deleted_at < :c "
                "AND EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = orders.id) "
                "ORDER BY id"
            ),
            {"c": CUTOFF},
        )
        return [int(r[0]) for r in rows]


def _child_deletes(ctx) -> list[str]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("DELETE FROM order_items"):
            seen.append(statement)

    sa.event.listen(ctx.sql.engine, "before_cursor_execute", record)
    return seen


def test_unchanged_children_leave_with_one_delete_per_table_per_span(
    app_settings, contexts, monkeypatch
):
    settings = app_settings(rows=2000, archive__batch_size=1000)
    monkeypatch.setattr(sql_rows, "CHUNK", 1)
    monkeypatch.setattr(sql_rows, "SPAN_CHUNKS", 4)
    span = 4  # roots per span
    ctx = contexts(settings)
    before = snapshots(ctx, AGGREGATE)
    deletes = _child_deletes(ctx)
    (orders,) = open_sources(ctx, ["orders"])
    old = orders.count()

    report = archive_table(ctx, orders)

    assert 1000 > report.rows_archived == old > span and report.rows_skipped == 0
    assert len(deletes) == -(-old // span)  # no fallback to the row-by-row path
    assert all("order_items.order_id = ANY" in statement for statement in deletes)
    assert_each_row_once(ctx, before)


def test_a_child_deleted_moved_or_changed_meanwhile_keeps_exactly_its_roots(app_settings, contexts):
    settings = app_settings(archive__batch_size=1000)
    touched: dict[str, int] = {}

    def change(point: str) -> None:
        if point != "object_verified" or touched:
            return
        gone, moved_from, moved_to, changed = _old_orders(ctx)[:4]
        with ctx.sql.begin() as conn:
            conn.execute(sa.text("DELETE FROM order_items WHERE order_id = :o"), {"o": gone})
            item = conn.execute(
                sa.text("SELECT min(id) FROM order_items WHERE order_id = :o"), {"o": moved_from}
            ).scalar_one()
            conn.execute(
                sa.text("UPDATE order_items SET order_id = :t WHERE id = :i"),
                {"t": moved_to, "i": item},
            )
            conn.execute(
                sa.text("UPDATE order_items SET quantity = quantity + 1 WHERE order_id = :o"),
                {"o": changed},
            )
        touched.update(gone=gone, moved_from=moved_from, moved_to=moved_to, changed=changed)

    ctx = contexts(settings, hook=change)
    (orders,) = open_sources(ctx, ["orders"])
    old = orders.count()

    report = archive_table(ctx, orders)

    kept = set(touched.values())
    assert report.rows_skipped == 4 and report.rows_archived == old - 4
    with ctx.sql.connect() as conn:
        present = set(conn.execute(sa.text("SELECT id FROM orders")).scalars())
        (entry,) = manifest.entries(conn, table="orders")
        items = dict(conn.execute(sa.text("SELECT id, order_id FROM order_items")).all())
    assert kept <= present and sorted(entry.skipped_keys) == sorted(kept)
    assert not kept & set(archived_keys(ctx, "orders"))
    archived_items = archived_keys(ctx, "order_items")
    assert len(archived_items) == len(set(archived_items))
    assert not set(archived_items) & set(items)  # no child that stayed is in the archive
    assert touched["gone"] not in items.values() and touched["moved_to"] in items.values()


def test_a_copy_the_store_checksums_differently_is_not_completed(app_settings, contexts):
    """The store's own SHA-256 of a published copy must equal the verified one; otherwise
    the batch stays 'deleted' with its staged objects, and the rerun publishes it."""
    settings = app_settings(archive__batch_size=1000)
    ctx = contexts(settings)
    before = snapshots(ctx, AGGREGATE)
    copy = ctx.store.copy

    def bad_copy(*args, **kwargs):
        return replace(copy(*args, **kwargs), stored_sha256="0" * 64)

    ctx.store.copy = bad_copy  # type: ignore[method-assign]
    (orders,) = open_sources(ctx, ["orders"])
    with pytest.raises(ArchiveVerificationFailed, match="rerun the archive"):
        archive_table(ctx, orders)
    with ctx.sql.connect() as conn:
        (entry,) = manifest.entries(conn, table="orders")
    assert entry.state == manifest.DELETED
    assert all(ctx.store.exists(manifest.staged_key(key)) for key in entry.object_keys)

    rerun = contexts(settings)
    report = archive_table(rerun, open_sources(rerun, ["orders"])[0])
    assert report.resumed_batches == 1
    assert_each_row_once(rerun, before)


def test_a_child_object_whose_keys_are_not_the_keys_read_deletes_nothing(app_settings, contexts):
    """One order_items id in the middle of the child object is not one read (same count,
    still unique): its decoded key columns are compared with the child keys read, so the
    batch fails verification and no order or child leaves. The rerun resumes the batch from
    the staged objects (no keys read now: each row compared whole), keeps that item's order
    out of the published object, and archives it afresh in a batch of its own: the item is
    archived once, under its own id."""
    settings = app_settings(archive__batch_size=1000)
    ctx = contexts(settings)
    before = snapshots(ctx, AGGREGATE)
    (orders,) = open_sources(ctx, ["orders"])
    encode_parts = orders.encode_parts

    def renamed_middle_item(batch):
        items = batch.children["order_items"]
        ids = items.column("id").to_pylist()
        ids[len(ids) // 2] = max(ids) + 1_000_000
        column = pa.array(ids, items.schema.field("id").type)
        at = items.schema.get_field_index("id")
        batch.children["order_items"] = items.set_column(at, "id", column)
        return encode_parts(batch)

    orders.encode_parts = renamed_middle_item  # type: ignore[method-assign]
    with pytest.raises(ArchiveVerificationFailed, match="not exactly the keys read"):
        archive_table(ctx, orders)
    assert snapshots(ctx, AGGREGATE) == before

    rerun = contexts(settings)
    report = archive_table(rerun, open_sources(rerun, ["orders"])[0])
    assert report.resumed_batches == 1 and report.rows_skipped == 1
    assert report.rows_archived == len(before["orders"].rows) - len(snapshot(rerun, "orders").rows)
    assert set(archived_keys(rerun, "order_items")) <= set(before["order_items"].rows)
    assert_each_row_once(rerun, before)
