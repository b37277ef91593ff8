"""Aggregates: old soft-deleted orders leave with their order_items, payments and
inventory_reservations (one object per table per batch), and come back parents first; a root
whose children changed stays whole; rows referenced elsewhere stay, and reports say why."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from steward.archive import manifest, runs
from steward.archive.archiver import Budget
from steward.archive.restore import RestoreRequest, restore
from steward.archive.runner import archive_table, plan_table
from steward.archive.sources import open_sources
from steward.errors import ConfigError

from .conftest import NOW, restore_everything, snapshot, snapshots

AGGREGATE = ("orders", "order_items", "payments", "inventory_reservations")
CHILDREN = AGGREGATE[1:]


def _count(ctx, sql: str, **params) -> int:
    with ctx.sql.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


def _old_orders(ctx) -> set[int]:
    cutoff = NOW - timedelta(days=90)
    with ctx.sql.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id FROM orders WHERE deleted_at IS NOT NULL AND deleted_at < :c"),
            {"c": cutoff},
        )
        return {int(r[0]) for r in rows}


def test_old_orders_leave_with_their_children_and_come_back_parents_first(app_settings, contexts):
    ctx = contexts(app_settings(archive__batch_size=4))
    before = snapshots(ctx, AGGREGATE)
    old = _old_orders(ctx)
    (orders,) = open_sources(ctx, ["orders"])
    plan = plan_table(ctx, orders)
    assert plan["rows"] == len(old) > 4
    assert set(plan["children"]) == set(CHILDREN) and plan["children"]["order_items"] > 0
    assert {fk["table"] for fk in plan["foreign_keys"]} >= set(CHILDREN)

    report = archive_table(ctx, orders)

    assert report.rows_archived == len(old)
    assert report.children == plan["children"]
    assert not old & set(snapshot(ctx, "orders").rows)
    for child in CHILDREN:
        assert (
            _count(
                ctx, f"SELECT count(*) FROM {child} WHERE order_id IN ({','.join(map(str, old))})"
            )
            == 0
        )  # noqa: E501
    with ctx.sql.connect() as conn:
        done = manifest.entries(conn, table="orders", states=[manifest.COMPLETE])
    assert len(done) == -(-len(old) // 4)
    for entry in done:  # one object per table per batch id, all checksummed
        assert {p.table_name for p in entry.parts} == set(CHILDREN)
        for key in entry.object_keys:
            assert entry.batch_id in key and ctx.store.exists(key)
        assert all(p.sha256 and p.bytes for p in entry.parts)
    assert report.objects == 4 * len(done)
    with ctx.sql.connect() as conn:
        (shown,) = [row for row in runs.status_rows(conn) if row["table_name"] == "orders"]
    assert (shown["objects"], shown["rows"], shown["bytes"]) == (
        report.objects,
        report.rows_archived,
        report.bytes,
    )

    restore_everything(ctx, ("orders",))
    after = snapshots(ctx, AGGREGATE)
    assert {n: s.checksum for n, s in after.items()} == {n: s.checksum for n, s in before.items()}


def test_restore_by_key_brings_the_order_back_with_its_children(app_settings, contexts):
    ctx = contexts(app_settings())
    before = snapshots(ctx, AGGREGATE)
    wanted = _count(
        ctx,
        "SELECT min(o.id) FROM orders o JOIN order_items i ON i.order_id = o.id "
        "WHERE o.deleted_at < :c",
        c=NOW - timedelta(days=90),
    )
    with ctx.sql.connect() as conn:
        item_ids = set(
            conn.execute(
                sa.text("SELECT id FROM order_items WHERE order_id = :k"), {"k": wanted}
            ).scalars()
        )
    (orders,) = open_sources(ctx, ["orders"])
    archive_table(ctx, orders)
    assert not item_ids & set(snapshot(ctx, "order_items").rows)

    report = restore(ctx, RestoreRequest(table="orders", keys=[str(wanted)]))

    assert report.restored == 1 and not report.failed and report.status == "complete"
    assert report.children_restored["order_items"] == len(item_ids) > 0
    assert snapshot(ctx, "orders").rows[wanted] == before["orders"].rows[wanted]
    items = snapshot(ctx, "order_items").rows
    assert {k: items[k] for k in item_ids} == {k: before["order_items"].rows[k] for k in item_ids}


def test_an_order_whose_children_change_stays_whole(app_settings, contexts):
    """Between the read and the delete: a payment's status changes (no updated_at on
    payments), and a new item is added to another order. Both orders stay with all their
    children; the rest of the batch leaves."""
    settings = app_settings(archive__batch_size=1000)
    touched: dict[str, int] = {}

    def change(point: str) -> None:
        if point != "object_verified" or touched:
            return
        with ctx.sql.begin() as conn:
            paid = conn.execute(
                sa.text(
                    "SELECT min(p.id), min(p.order_id) FROM payments p JOIN orders o "
                    "ON o.id = p.order_id WHERE o.deleted_at < :c"
                ),
                {"c": NOW - timedelta(days=90)},
            ).one()
            conn.execute(
                sa.text("UPDATE payments SET status = 'refunded' WHERE id = :i"), {"i": paid[0]}
            )
            other = conn.execute(
                sa.text("SELECT max(o.id) FROM orders o WHERE o.deleted_at < :c AND o.id <> :p"),
                {"c": NOW - timedelta(days=90), "p": paid[1]},
            ).scalar_one()
            product = conn.execute(sa.text("SELECT min(id) FROM products")).scalar_one()
            conn.execute(
                sa.text(
                    "INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
                    "VALUES (:o, :p, 1, 9.99)"
                ),
                {"o": other, "p": product},
            )
        touched.update(paid_order=int(paid[1]), grown_order=int(other))

    ctx = contexts(settings, hook=change)
    old = _old_orders(ctx)
    (orders,) = open_sources(ctx, ["orders"])
    report = archive_table(ctx, orders)

    kept = set(snapshot(ctx, "orders").rows)
    assert {touched["paid_order"], touched["grown_order"]} <= kept
    assert report.rows_skipped == 2 and report.rows_archived == len(old) - 2
    status = _count(
        ctx, "SELECT count(*) FROM payments WHERE order_id = :o AND status = 'refunded'",
        o=touched["paid_order"],
    )  # fmt: skip
    assert status == 1
    with ctx.sql.connect() as conn:
        (entry,) = manifest.entries(conn, table="orders")
    assert sorted(entry.skipped_keys) == sorted([touched["paid_order"], touched["grown_order"]])
    assert not (old - {touched["paid_order"], touched["grown_order"]}) & kept


def test_rows_referenced_elsewhere_stay_and_every_report_names_the_table(app_settings, contexts):
    ctx = contexts(app_settings())
    (users,) = open_sources(ctx, ["users"])
    plan = plan_table(ctx, users)
    assert plan["kept"] > 0
    assert "orders.user_id" in plan["kept_reason"]
    assert any(fk["table"] == "orders" and "child?" in fk["role"] for fk in plan["foreign_keys"])
    report = archive_table(ctx, users, Budget())
    assert report.kept == plan["kept"] and "orders.user_id" in report.kept_reason
    assert report.to_dict()["kept_reason"] == report.kept_reason


@pytest.mark.parametrize(
    ("children", "named"),
    [(["no_such_table"], "no_such_table"), (["audit_log"], "audit_log")],
)
def test_bad_children_are_refused_before_any_data_moves(children, named, app_settings, contexts):
    policy = {"table": "orders", "children": children}
    ctx = contexts(app_settings(archive__policies=json.dumps([policy])))
    before = snapshots(ctx, AGGREGATE)
    with pytest.raises(ConfigError, match=named):
        open_sources(ctx)
    assert {n: s.checksum for n, s in snapshots(ctx, AGGREGATE).items()} == {
        n: s.checksum for n, s in before.items()
    }


def test_a_child_table_restore_points_at_its_root(app_settings, contexts):
    ctx = contexts(app_settings())
    (orders,) = open_sources(ctx, ["orders"])
    archive_table(ctx, orders)
    with pytest.raises(ConfigError, match="archived with orders"):
        restore(ctx, RestoreRequest(table="order_items", keys=[1]))
