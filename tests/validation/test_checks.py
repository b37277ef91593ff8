"""Bad suites stop the run before anything executes, naming the file, the expectation and the
problem; custom SQL runs read-only, so a suite cannot change data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from steward.errors import ConfigError
from steward.validation import plan_validation, run_sql_suite
from steward.validation.readonly import gx_connection, read_only
from tests.validation.conftest import connect


def edit_expectation(path: Path, name: str, **changes) -> None:
    data = json.loads(path.read_text())
    item = next(e for e in data["expectations"] if e["meta"]["name"] == name)
    for key, value in changes.items():
        if key == "kwargs":
            item["kwargs"].update(value)
        else:
            item[key] = value
    path.write_text(json.dumps(data))


@pytest.fixture
def settings_with_copy(app_settings, suites_dir):
    return app_settings(rows=0, validation__expectations_dir=str(suites_dir)), suites_dir


def test_unknown_expectation_type(settings_with_copy) -> None:
    settings, suites = settings_with_copy
    edit_expectation(suites / "orders.json", "status_in_set", type="expect_order_to_be_nice")
    with pytest.raises(ConfigError) as err:
        plan_validation(settings)
    message = str(err.value)
    assert "orders.json, expectation 'status_in_set'" in message
    assert "unknown expectation type 'expect_order_to_be_nice'" in message


def test_invalid_kwargs_are_named(settings_with_copy) -> None:
    settings, suites = settings_with_copy
    edit_expectation(suites / "products.json", "rating_within_0_5", kwargs={"mostly": 7})
    with pytest.raises(ConfigError, match=r"products\.json, expectation 'rating_within_0_5': .*"):
        plan_validation(settings)


def test_missing_table(settings_with_copy) -> None:
    settings, suites = settings_with_copy
    index = json.loads((suites / "index.json").read_text())
    next(e for e in index["suites"] if e["suite"] == "payments")["table"] = "paymentz"
    (suites / "index.json").write_text(json.dumps(index))
    with pytest.raises(ConfigError, match=r"payments\.json: table 'paymentz' does not exist"):
        plan_validation(settings)


def test_missing_column(settings_with_copy) -> None:
    settings, suites = settings_with_copy
    edit_expectation(suites / "orders.json", "status_in_set", kwargs={"column": "state"})
    with pytest.raises(ConfigError) as err:
        plan_validation(settings)
    assert "orders.json, expectation 'status_in_set': column 'state' does not exist" in str(
        err.value
    )


def test_custom_sql_that_does_not_compile(settings_with_copy) -> None:
    settings, suites = settings_with_copy
    query = "SELECT o.id FROM {batch} AS o JOIN order_items i ON i.order_id = o.id WHERE o.totl > 0"
    edit_expectation(
        suites / "orders.json", "total_equals_items", kwargs={"unexpected_rows_query": query}
    )
    with pytest.raises(ConfigError) as err:
        plan_validation(settings)
    message = str(err.value)
    assert "orders.json, expectation 'total_equals_items': the query does not run on" in message
    assert "totl" in message


def test_custom_sql_that_writes_is_refused(settings_with_copy) -> None:
    settings, suites = settings_with_copy
    query = "DELETE FROM orders WHERE id IN (SELECT id FROM {batch})"
    edit_expectation(
        suites / "orders.json", "total_equals_items", kwargs={"unexpected_rows_query": query}
    )
    with pytest.raises(ConfigError, match="custom SQL must be a SELECT"):
        plan_validation(settings)


def test_read_only_transaction_refuses_writes(app_settings) -> None:
    settings = app_settings(rows=300)
    with read_only(settings) as conn, pytest.raises(sa.exc.DBAPIError):
        conn.exec_driver_sql("DELETE FROM audit_log")
    with connect(settings) as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM audit_log")).scalar() > 0


def test_gx_engine_is_read_only_even_for_a_writing_cte(app_settings, suites_dir) -> None:
    settings = app_settings(rows=300, validation__expectations_dir=str(suites_dir))
    target = gx_connection(settings)
    engine = sa.create_engine(target.url, **target.kwargs)
    try:
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM audit_log")
    finally:
        engine.dispose()
    if settings.database_url.startswith("postgresql"):
        # passes the SELECT/WITH check; at run time it is refused (GX's read-only session, and
        # GX wraps the query, where PostgreSQL refuses data-modifying CTEs): an error, no delete
        query = (
            "WITH gone AS (DELETE FROM audit_log RETURNING id) "
            "SELECT o.id FROM {batch} AS o JOIN gone g ON g.id = o.id"
        )
        edit_expectation(
            suites_dir / "orders.json",
            "total_equals_items",
            kwargs={"unexpected_rows_query": query},
        )
        plan = plan_validation(settings, ["orders"])
        outcome = run_sql_suite(plan.suites[0], settings, plan.params)
        item = next(e for e in outcome.expectations if e.name == "total_equals_items")
        assert not item.success and item.error
        assert outcome.status == "failed"
    with connect(settings) as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM audit_log")).scalar() > 0


def test_unreachable_database_is_transient_and_never_shows_the_password(make_settings) -> None:
    from steward.errors import SourceUnavailable, is_transient
    from steward.validation import load_suites
    from steward.validation.plan import suite_parameters
    from tests.validation.conftest import EXPECTATIONS

    settings = make_settings(database__url="postgresql+psycopg://bob:p%40ss%3Aw0rd@127.0.0.1:1/x")
    suite = load_suites(EXPECTATIONS, ["users"])[0]
    with pytest.raises(SourceUnavailable) as err:
        run_sql_suite(suite, settings, suite_parameters(settings))
    assert is_transient(err.value)
    assert "database unreachable" in str(err.value) and "check database.url" in str(err.value)
    assert "p@ss:w0rd" not in str(err.value) and "p%40ss" not in str(err.value)
