"""The shipped suites cover the example schema's business rules: clean demo data passes all of
them (warnings included), and each rule broken on purpose is reported with the offending key,
on PostgreSQL and on the embedded SQLite. One database per dialect, every rule broken at once
on different rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from steward.errors import IntegrityViolation
from steward.settings import Settings
from steward.validation import load_suites, run_validation
from tests.validation.conftest import EXPECTATIONS, connect, drop_foreign_keys

Break = Callable[[sa.Connection, Callable[[datetime], Any]], Any]


def one(conn: sa.Connection, sql: str, **params: Any) -> Any:
    return conn.execute(sa.text(sql), params).first()


def cycle(conn, ts):
    child = one(conn, "SELECT id, parent_id FROM categories WHERE parent_id IS NOT NULL LIMIT 1")
    conn.execute(sa.text("UPDATE categories SET parent_id = :c WHERE id = :p"),
                 {"c": child.id, "p": child.parent_id})  # fmt: skip
    return child.parent_id


def untrimmed_brand(conn, ts):
    row = one(conn, "SELECT id FROM products WHERE brand IS NOT NULL ORDER BY id LIMIT 1")
    conn.execute(sa.text("UPDATE products SET brand = ' ' || brand WHERE id = :i"), {"i": row.id})
    return row.id


def recased_brand(conn, ts):
    row = one(conn, "SELECT brand FROM products WHERE brand IS NOT NULL GROUP BY brand "
              "HAVING COUNT(*) > 1 ORDER BY brand LIMIT 1")  # fmt: skip
    target = one(conn, "SELECT MAX(id) AS id FROM products WHERE brand = :b", b=row.brand)
    conn.execute(
        sa.text("UPDATE products SET brand = UPPER(brand) WHERE id = :i"), {"i": target.id}
    )
    return row.brand.lower()


def deleted_without_audit(conn, ts):
    row = one(
        conn, "SELECT id, created_at FROM orders WHERE deleted_at IS NULL ORDER BY id LIMIT 1"
    )
    conn.execute(
        sa.text("UPDATE orders SET deleted_at = :t, deleted_by = 'x', delete_reason = 'y', "
                "updated_at = :t WHERE id = :i"),
        {"t": ts(datetime.now(UTC) - timedelta(hours=1)), "i": row.id},
    )  # fmt: skip
    return row.id


def item_of_deleted_product(conn, ts):
    row = one(conn, "SELECT i.id, i.product_id, o.created_at FROM order_items i JOIN orders o "
              "ON o.id = i.order_id WHERE o.id > 20 ORDER BY i.id LIMIT 1")  # fmt: skip
    gone = ts(_aware(row.created_at) - timedelta(days=1))
    conn.execute(
        sa.text("UPDATE products SET deleted_at = :t, deleted_by = 'x', delete_reason = 'y', "
                "updated_at = :t, created_at = :c WHERE id = :p"),
        {"t": gone, "c": ts(_aware(row.created_at) - timedelta(days=2)), "p": row.product_id},
    )  # fmt: skip
    return row.id


def captured_payment_failed(conn, ts):
    row = one(conn, "SELECT o.id FROM orders o JOIN payments p ON p.order_id = o.id WHERE "
              "o.status = 'delivered' AND p.status = 'captured' ORDER BY o.id LIMIT 1")  # fmt: skip
    conn.execute(
        sa.text(
            "UPDATE payments SET status = 'failed' WHERE order_id = :i AND status = 'captured'"
        ),
        {"i": row.id},
    )
    return row.id


def released_active_hold(conn, ts):
    row = one(conn, "SELECT id, product_id FROM inventory_reservations WHERE status = 'active' "
              "ORDER BY id LIMIT 1")  # fmt: skip
    conn.execute(sa.text("UPDATE inventory_reservations SET status = 'released' WHERE id = :i"),
                 {"i": row.id})  # fmt: skip
    return row.product_id


def consumed_made_active(conn, ts):
    row = one(conn, "SELECT id FROM inventory_reservations WHERE status = 'consumed' LIMIT 1")
    conn.execute(sa.text("UPDATE inventory_reservations SET status = 'active' WHERE id = :i"),
                 {"i": row.id})  # fmt: skip
    return row.id


def payment_in_other_currency(conn, ts):
    row = one(conn, "SELECT id FROM payments ORDER BY id DESC LIMIT 1")
    conn.execute(sa.text("UPDATE payments SET currency = 'JPY' WHERE id = :i"), {"i": row.id})
    return row.id


def receipt_with_negative_delta(conn, ts):
    row = one(conn, "SELECT id FROM inventory_movements WHERE reason = 'receipt' LIMIT 1")
    conn.execute(sa.text("UPDATE inventory_movements SET delta = -delta WHERE id = :i"),
                 {"i": row.id})  # fmt: skip
    return row.id


def published_without_time(conn, ts):
    row = one(conn, "SELECT seq FROM outbox WHERE status = 'published' ORDER BY seq LIMIT 1")
    conn.execute(sa.text("UPDATE outbox SET published_at = NULL WHERE seq = :s"), {"s": row.seq})
    return row.seq


def published_with_error(conn, ts):
    row = one(conn, "SELECT seq FROM outbox WHERE status = 'published' ORDER BY seq DESC LIMIT 1")
    conn.execute(sa.text("UPDATE outbox SET last_error = 'x' WHERE seq = :s"), {"s": row.seq})
    return row.seq


def published_after_pending(conn, ts):
    row = one(
        conn,
        "SELECT a.seq FROM outbox a JOIN outbox b ON b.aggregate_type = a.aggregate_type AND "
        "b.aggregate_id = a.aggregate_id AND b.seq > a.seq WHERE a.status = 'published' AND "
        "b.status = 'published' AND a.seq > 5 ORDER BY a.seq LIMIT 1",
    )
    conn.execute(
        sa.text("UPDATE outbox SET status = 'pending', published_at = NULL WHERE seq = :s"),
        {"s": row.seq},
    )
    return row.seq


def audit_in_future(conn, ts):
    row = one(conn, "SELECT id FROM audit_log ORDER BY id LIMIT 1")
    conn.execute(sa.text("UPDATE audit_log SET occurred_at = :t WHERE id = :i"),
                 {"t": ts(datetime.now(UTC) + timedelta(days=1)), "i": row.id})  # fmt: skip
    return row.id


def order_without_items(conn, ts):
    row = one(conn, "SELECT MAX(order_id) AS id FROM order_items")
    conn.execute(sa.text("DELETE FROM order_items WHERE order_id = :i"), {"i": row.id})
    return row.id


def duplicate_line(conn, ts):
    row = one(conn, "SELECT id, order_id, product_id, unit_price FROM order_items WHERE "
              "order_id = 10 LIMIT 1")  # fmt: skip
    conn.execute(
        sa.text("INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
                "VALUES (:o, :p, 1, :u)"),
        {"o": row.order_id, "p": row.product_id, "u": row.unit_price},
    )  # fmt: skip
    return row.id


def updated_before_created(conn, ts):
    row = one(conn, "SELECT id, created_at FROM users ORDER BY id DESC LIMIT 1")
    conn.execute(sa.text("UPDATE users SET updated_at = :t WHERE id = :i"),
                 {"t": ts(_aware(row.created_at) - timedelta(days=1)), "i": row.id})  # fmt: skip
    return row.id


def rating_without_ratings(conn, ts):
    row = one(conn, "SELECT id FROM products WHERE rating_count = 0 ORDER BY id DESC LIMIT 1")
    conn.execute(sa.text("UPDATE products SET rating_avg = 4.5 WHERE id = :i"), {"i": row.id})
    return row.id


def missing_user(conn, ts):
    row = one(conn, "SELECT id FROM orders WHERE id > 30 ORDER BY id LIMIT 1")
    conn.execute(sa.text("UPDATE orders SET user_id = 99999999 WHERE id = :i"), {"i": row.id})
    return row.id


# (suite, expectation, break, column holding the key in the failing rows (None: plain keys))
CASES: list[tuple[str, str, Break, str | None]] = [
    ("categories", "tree_without_cycles", cycle, "id"),
    ("products", "brand_trimmed", untrimmed_brand, "id"),
    ("products", "brand_one_casing", recased_brand, "brand"),
    ("orders", "deletion_audited", deleted_without_audit, "id"),
    ("order_items", "product_alive_when_ordered", item_of_deleted_product, "id"),
    ("orders", "paid_orders_captured", captured_payment_failed, "id"),
    ("inventory", "reserved_matches_active_reservations", released_active_hold, "product_id"),
    ("inventory_reservations", "active_only_for_pending_orders", consumed_made_active, "id"),
    ("payments", "currency_matches_order", payment_in_other_currency, "id"),
    ("inventory_movements", "ledger_signs", receipt_with_negative_delta, "id"),
    ("outbox", "published_iff_published_at", published_without_time, "seq"),
    ("outbox", "order_kept_per_aggregate", published_after_pending, "seq"),
    ("outbox", "published_without_error", published_with_error, "seq"),
    ("audit_log", "occurred_not_in_future", audit_in_future, "id"),
    ("orders", "has_items", order_without_items, "id"),
    ("order_items", "one_line_per_product", duplicate_line, None),
    ("users", "updated_after_created", updated_before_created, None),
    ("products", "rating_avg_iff_rated", rating_without_ratings, "id"),
    ("orders", "user_present", missing_user, "id"),
]


@contextmanager
def unchecked(settings: Settings) -> Iterator[sa.Connection]:
    """A writable connection without foreign-key checks (SQLite: a plain sqlite3 connection)."""
    if not settings.database_url.startswith("sqlite"):
        with connect(settings) as conn:
            yield conn
        return
    engine = sa.create_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            yield conn
    finally:
        engine.dispose()


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_clean_demo_data_passes_every_rule_including_warnings(app_settings) -> None:
    settings = app_settings(rows=1500)
    summary, _ = run_validation(settings, scrub_objects=0, fail_on="warning")
    assert summary["success"] and summary["failed_warning"] == 0
    sql_suites = [s for s in load_suites(EXPECTATIONS) if s.datasource == "sql"]
    assert summary["expectations"] == sum(len(s.expectations) for s in sql_suites) >= 110


def test_events_the_relay_published_on_the_first_try_pass(app_settings) -> None:
    # The relay counts failed deliveries only: an event published on the first try keeps
    # attempts 0 (what `steward demo` relays right before the nightly validation).
    settings = app_settings(rows=800)
    with connect(settings) as conn:
        conn.execute(sa.text("UPDATE outbox SET attempts = 0 WHERE status = 'published'"))
    summary, _ = run_validation(settings, scrub_objects=0)
    assert summary["success"] and summary["failed_critical"] == 0, summary["failures"]


def test_every_rule_broken_on_purpose_is_reported_with_its_key(app_settings) -> None:
    settings: Settings = app_settings(rows=1500, validation__sample_keys="200")
    sqlite = settings.database_url.startswith("sqlite")
    for table in ("orders", "order_items"):
        drop_foreign_keys(settings, table)  # the case these invariants exist for

    def ts(value: datetime) -> Any:
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ") if sqlite else value

    expected = {}
    with unchecked(settings) as conn:
        for suite, name, breaker, column in CASES:
            expected[(suite, name)] = (breaker(conn, ts), column)
    try:
        run_validation(settings, scrub_objects=0)
        raise AssertionError("validation passed over broken data")
    except IntegrityViolation as failed:
        summary = failed.summary  # type: ignore[attr-defined]
    found = {(f["suite"], f["expectation"]): f for f in summary["failures"]}
    missed = [key for key in expected if key not in found]
    assert not missed, f"not reported: {missed}"
    for key, (value, column) in expected.items():
        sample = found[key]["sample"]
        keys = [row[column] if column else row for row in sample]
        assert value in keys, f"{key}: {value!r} not among {sample}"
        assert found[key]["severity"] == "critical", key
