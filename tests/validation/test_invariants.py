"""Clean demo data passes every suite; each cross-table invariant broken on purpose is reported
with the offending rows, on PostgreSQL and on the embedded SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from steward.settings import Settings
from steward.validation import SuiteOutcome, plan_validation, run_sql_suite
from tests.validation.conftest import connect, insert_unchecked


def run(settings: Settings, names: list[str] | None = None) -> dict[str, SuiteOutcome]:
    plan = plan_validation(settings, names)
    return {s.name: run_sql_suite(s, settings, plan.params) for s in plan.suites}


def failure(outcomes: dict[str, SuiteOutcome], suite: str, name: str):
    failed = {e.name: e for e in outcomes[suite].failed}
    assert name in failed, f"{suite}/{name} did not fail: {outcomes[suite].failed}"
    return failed[name]


def scalar(settings: Settings, query) -> object:
    with connect(settings) as conn:
        return conn.execute(query).scalar()


def test_clean_demo_data_passes_every_suite(app_settings) -> None:
    settings = app_settings()
    outcomes = run(settings)
    assert len(outcomes) == 12  # every SQL suite (the MongoDB one needs documents.url)
    assert {name: o.status for name, o in outcomes.items()} == dict.fromkeys(outcomes, "passed")
    assert all(e.error is None for o in outcomes.values() for e in o.expectations)
    # the ledger invariant is not vacuous: every product has its opening movement
    opening = sa.text("SELECT COUNT(*) FROM inventory_movements WHERE reason = 'opening'")
    assert scalar(settings, opening) == scalar(settings, sa.text("SELECT COUNT(*) FROM products"))


def test_order_total_not_matching_its_items_is_reported_with_the_order(app_settings) -> None:
    settings = app_settings()
    with connect(settings) as conn:
        conn.execute(sa.text("UPDATE orders SET total = total + 1 WHERE id IN (3, 7)"))
    item = failure(run(settings, ["orders"]), "orders", "total_equals_items")
    assert item.severity == "critical" and item.unexpected_count == 2
    assert sorted(row["id"] for row in item.sample) == [3, 7]
    assert all(abs(float(r["total"]) - float(r["items_total"]) - 1) < 0.01 for r in item.sample)


def test_payments_above_the_order_total_are_reported(app_settings) -> None:
    settings = app_settings()
    with connect(settings) as conn:
        order = conn.execute(sa.text("SELECT id, total, currency FROM orders LIMIT 1")).one()
        conn.execute(
            sa.text(
                "INSERT INTO payments (order_id, amount, currency, status, provider, created_at) "
                "VALUES (:o, :a, :c, 'captured', 'stripe', :t)"
            ),
            {"o": order.id, "a": order.total + 10, "c": order.currency, "t": datetime.now(UTC)},
        )
    item = failure(run(settings, ["orders"]), "orders", "payments_within_total")
    assert item.unexpected_count == 1 and item.sample[0]["id"] == order.id


def test_on_hand_differing_from_its_movements_is_reported(app_settings) -> None:
    settings = app_settings()
    with connect(settings) as conn:
        conn.execute(sa.text("UPDATE inventory SET on_hand = on_hand + 5 WHERE product_id = 4"))
    item = failure(run(settings, ["inventory"]), "inventory", "on_hand_matches_movements")
    assert item.unexpected_count == 1
    assert item.sample[0]["product_id"] == 4
    assert item.sample[0]["on_hand"] == item.sample[0]["movements_total"] + 5


def test_two_prices_in_force_at_once_are_reported(app_settings) -> None:
    settings = app_settings()
    with connect(settings) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO prices (product_id, currency, amount, effective_from, effective_to) "
                "VALUES (6, 'EUR', 9.99, :f, NULL)"
            ),
            {"f": datetime.now(UTC) - timedelta(hours=1)},
        )
    item = failure(run(settings, ["prices"]), "prices", "one_price_in_force")
    assert item.unexpected_count >= 1
    assert {row["product_id"] for row in item.sample} == {6}


def test_order_item_pointing_at_a_missing_product_is_reported(app_settings) -> None:
    settings = app_settings()
    insert_unchecked(
        settings,
        "order_items",
        {"order_id": 1, "product_id": 987654, "quantity": 1, "unit_price": Decimal("1.00")},
    )
    item = failure(run(settings, ["order_items"]), "order_items", "product_present")
    assert item.unexpected_count == 1
    assert item.sample[0]["product_id"] == 987654 and item.sample[0]["order_id"] == 1


def test_a_pending_event_older_than_the_lag_is_a_warning(app_settings) -> None:
    settings = app_settings()  # lag 3600 s: the demo's pending events are younger
    two_hours_ago: object = datetime.now(UTC) - timedelta(hours=2)
    if settings.database_url.startswith("sqlite"):  # stored as naive UTC text
        two_hours_ago = two_hours_ago.replace(tzinfo=None).isoformat(" ")  # type: ignore[attr-defined]
    last_of_its_aggregate = (  # so the per-aggregate order still holds
        "SELECT MIN(o.seq) FROM outbox o WHERE o.status = 'published' AND NOT EXISTS (SELECT 1 "
        "FROM outbox p WHERE p.aggregate_type = o.aggregate_type AND "
        "p.aggregate_id = o.aggregate_id AND p.seq > o.seq)"
    )
    with connect(settings) as conn:
        seq = conn.execute(sa.text(last_of_its_aggregate)).scalar()
        conn.execute(
            sa.text(
                "UPDATE outbox SET status = 'pending', published_at = NULL, created_at = :t "
                "WHERE seq = :s"
            ),
            {"t": two_hours_ago, "s": seq},
        )
    outcome = run(settings, ["outbox"])["outbox"]
    item = failure({"outbox": outcome}, "outbox", "pending_within_lag")
    assert item.severity == "warning" and item.unexpected_count == 1
    assert item.sample[0]["seq"] == seq
    assert outcome.status == "warning" and outcome.failed_critical == 0


def test_per_table_expectations_report_counts_and_failing_keys(app_settings) -> None:
    settings = app_settings()
    with connect(settings) as conn:
        conn.execute(sa.text("UPDATE orders SET status = 'lost' WHERE id IN (2, 5, 9)"))
        conn.execute(sa.text("UPDATE users SET deleted_by = NULL WHERE deleted_at IS NOT NULL"))
        deleted = conn.execute(sa.text("SELECT COUNT(*) FROM users WHERE deleted_at IS NOT NULL"))
        deleted_users = deleted.scalar()
        conn.execute(sa.text("UPDATE products SET rating_avg = 4.5, rating_count = 2 WHERE id = 3"))
    outcomes = run(settings, ["orders", "users", "products"])
    status = failure(outcomes, "orders", "status_in_set")
    assert status.unexpected_count == 3 and sorted(status.sample) == [2, 5, 9]
    soft = failure(outcomes, "users", "soft_delete_consistent")
    assert soft.unexpected_count == deleted_users > 0
    assert outcomes["products"].status == "passed"  # 4.5 is a valid rating
