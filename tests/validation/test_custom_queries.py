"""Any SELECT works as a custom query: ``FROM {batch} AS o WHERE NOT EXISTS (...)`` (once broken
by an appended ``AS subselect``), no alias at all, a leading WITH, ``%`` in a LIKE, on
PostgreSQL and SQLite, on the whole table and on an incremental batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from steward.settings import Settings
from steward.validation import plan_validation, run_sql_suite
from steward.validation.native import Batch
from tests.validation.conftest import connect

QUERIES = {
    "orders_without_items": (
        "SELECT o.id FROM {batch} AS o WHERE NOT EXISTS "
        "(SELECT 1 FROM order_items i WHERE i.order_id = o.id)"
    ),
    "no_alias": "SELECT id FROM {batch} WHERE total < 0",
    "leading_with": (
        "WITH lines AS (SELECT order_id, COUNT(*) AS n FROM order_items GROUP BY order_id) "
        "SELECT o.id FROM {batch} o LEFT JOIN lines l ON l.order_id = o.id WHERE l.n IS NULL"
    ),
    "like_percent": "SELECT id, status FROM {batch} WHERE status LIKE 'lo%'",
}


def add_queries(suites_dir: Path) -> None:
    path = suites_dir / "orders.json"
    suite = json.loads(path.read_text())
    for name, query in QUERIES.items():
        suite["expectations"].append(
            {
                "type": "unexpected_rows_expectation",
                "kwargs": {"unexpected_rows_query": query},
                "meta": {"name": name},
            }  # fmt: skip
        )
    path.write_text(json.dumps(suite))
    index = json.loads((suites_dir / "index.json").read_text())
    entry = next(e for e in index["suites"] if e["suite"] == "orders")
    entry["severity"].update(dict.fromkeys(QUERIES, "critical"))
    (suites_dir / "index.json").write_text(json.dumps(index))


def order_without_items(settings: Settings) -> int:
    with connect(settings) as conn:
        user = conn.execute(sa.text("SELECT MIN(id) FROM users")).scalar()
        now = datetime.now(UTC)
        conn.execute(
            sa.text(
                "INSERT INTO orders (user_id, status, currency, total, created_at, updated_at) "
                "VALUES (:u, 'lost', 'EUR', 0, :t, :t)"
            ),
            {"u": user, "t": now},
        )
        return int(conn.execute(sa.text("SELECT MAX(id) FROM orders")).scalar())


def test_any_select_runs_on_the_whole_table_and_on_a_batch(app_settings, suites_dir) -> None:
    settings = app_settings(validation__expectations_dir=str(suites_dir))
    add_queries(suites_dir)
    plan = plan_validation(settings, ["orders"])  # every query compiles (EXPLAIN)
    clean = run_sql_suite(plan.suites[0], settings, plan.params)
    assert clean.status == "passed", clean.failed
    order_id = order_without_items(settings)
    broken = {e.name: e for e in run_sql_suite(plan.suites[0], settings, plan.params).failed}
    for name in ("orders_without_items", "leading_with", "like_percent"):
        assert broken[name].error is None and broken[name].unexpected_count == 1, broken[name]
        assert broken[name].sample[0]["id"] == order_id
    assert "no_alias" not in broken
    # an incremental batch holding only that order: the cross-table queries see it alone
    batch = Batch(f"orders.id = {order_id}", "one order")
    only = {
        e.name: e for e in run_sql_suite(plan.suites[0], settings, plan.params, batch=batch).failed
    }
    assert only["orders_without_items"].unexpected_count == 1
    assert only["orders_without_items"].sample == [{"id": order_id}]
    other = Batch("orders.id = 1", "another order")
    assert run_sql_suite(plan.suites[0], settings, plan.params, batch=other).status == "passed"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_query_failing_at_run_time_fails_alone_and_later_checks_still_run(
    app_settings, suites_dir
) -> None:
    settings = app_settings(validation__expectations_dir=str(suites_dir))
    path = suites_dir / "orders.json"
    suite = json.loads(path.read_text())
    # compiles (EXPLAIN does not divide), fails when it runs: PostgreSQL aborts the transaction
    query = "SELECT id FROM {batch} WHERE total / 0 > 1"
    failing = {
        "type": "unexpected_rows_expectation",
        "meta": {"name": "divides_by_zero"},
        "kwargs": {"unexpected_rows_query": query},
    }
    suite["expectations"].insert(0, failing)
    path.write_text(json.dumps(suite))
    index = json.loads((suites_dir / "index.json").read_text())
    next(e for e in index["suites"] if e["suite"] == "orders")["severity"]["divides_by_zero"] = (
        "warning"
    )
    (suites_dir / "index.json").write_text(json.dumps(index))
    with connect(settings) as conn:
        conn.execute(sa.text("UPDATE orders SET total = total + 1 WHERE id = 12"))
    plan = plan_validation(settings, ["orders"])
    outcome = run_sql_suite(plan.suites[0], settings, plan.params)
    by_name = {e.name: e for e in outcome.expectations}
    assert "division by zero" in (by_name["divides_by_zero"].error or "")
    assert by_name["total_equals_items"].sample[0]["id"] == 12  # ran after the error
    assert all(e.error is None for e in outcome.expectations if e.name != "divides_by_zero")
