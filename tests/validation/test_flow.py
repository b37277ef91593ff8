"""The validate-data flow: a critical failure fails the run, a warning does not; artifacts carry
the counts and failing keys; Data Docs exist locally and in the object store and name the
failures; a bad suite stops the run before anything executes."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from flows.validate_data import REPORT_KEY, TABLE_KEY, validate_data
from steward.errors import ConfigError, IntegrityViolation
from steward.storage import open_object_store
from tests.conftest import read_artifacts
from tests.validation.conftest import connect

pytestmark = pytest.mark.usefixtures("prefect_harness")
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def run(**params):
    state = validate_data(**params, return_state=True)
    return state, read_artifacts(state.state_details.flow_run_id)


def table_of(artifacts):
    data = artifacts[TABLE_KEY]["data"]
    return {row["suite"]: row for row in (json.loads(data) if isinstance(data, str) else data)}


@sqlite_only
def test_archived_clean_data_passes_and_archive_objects_are_scrubbed(
    app_settings, s3_url, moto_endpoint
) -> None:
    from flows.archive_to_s3 import archive_to_s3

    settings = app_settings(
        rows=1500,
        objects__url=s3_url,
        objects__endpoint_url=moto_endpoint,
        validation__scrub_objects="4",
    )
    archived = archive_to_s3(tables=["orders", "users", "outbox", "inventory_movements"])
    assert archived  # the archive ran (its own tests prove what it moved)
    state, artifacts = run()
    assert state.is_completed()
    summary = state.result()
    assert summary["success"] is True and summary["failed_critical"] == 0
    assert summary["passed"] == 12 and summary["skipped"] == 1  # the MongoDB suite
    assert summary["scrub"]["checked"] >= 1 and summary["scrub"]["failures"] == []
    assert "Data validation passed" in artifacts[REPORT_KEY]["data"]
    assert "None: every expectation held" in artifacts[REPORT_KEY]["data"]
    assert table_of(artifacts)["product_reviews"]["note"] == "documents.url is not set"
    store = open_object_store(settings)
    assert store.exists("docs/validation/index.html")
    assert summary["data_docs_url"].endswith("/docs/validation/index.html")
    assert (settings.home / "validation-docs" / "index.html").is_file()


def test_a_critical_failure_fails_the_run_and_is_named_everywhere(app_settings) -> None:
    settings = app_settings()
    with connect(settings) as conn:
        conn.execute(sa.text("UPDATE orders SET total = total + 3 WHERE id = 11"))
    state, artifacts = run(suites=["orders", "order_items"], scrub_objects=0)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, IntegrityViolation)
    assert "orders/total_equals_items (1)" in str(error)
    assert error.summary["failed_critical"] == 1
    assert error.summary["failures"][0]["sample"][0]["id"] == 11
    report = artifacts[REPORT_KEY]["data"]
    assert (
        "# Data validation FAILED" in report
        and "`orders` / `total_equals_items`: 1 unexpected" in report
    )
    assert table_of(artifacts)["orders"]["failed_critical"] == 1
    pages = list((settings.home / "validation-docs").rglob("*.html"))
    orders_pages = [p for p in pages if "orders" in p.parts and "validations" in p.parts]
    assert orders_pages and "Order total equals the sum of its items" in orders_pages[0].read_text()
    assert open_object_store(settings).exists("docs/validation/index.html")


@sqlite_only
def test_a_warning_leaves_the_run_completed_with_the_warning_listed(app_settings) -> None:
    settings = app_settings()
    with connect(settings) as conn:
        conn.execute(
            sa.text("UPDATE outbox SET status = 'pending', published_at = NULL WHERE seq = 1")
        )
    state, artifacts = run(suites=["outbox"], docs=False, scrub_objects=0)
    assert state.is_completed()
    summary = state.result()
    assert summary["failed_critical"] == 0 and summary["failed_warning"] == 1
    assert summary["failures"][0]["expectation"] == "pending_within_lag"
    assert (
        "**warning** `outbox` / `pending_within_lag`: 1 unexpected" in artifacts[REPORT_KEY]["data"]
    )
    assert summary["data_docs_url"] is None
    strict, _ = run(suites=["outbox"], docs=False, scrub_objects=0, fail_on="warning")
    assert strict.is_failed()


@sqlite_only
def test_fail_on_never_reports_without_failing(app_settings) -> None:
    settings = app_settings()
    with connect(settings) as conn:
        conn.execute(sa.text("UPDATE orders SET status = 'lost' WHERE id = 2"))
    state, _ = run(suites=["orders"], docs=False, scrub_objects=0, fail_on="never")
    assert state.is_completed() and state.result()["failed_critical"] == 1


@sqlite_only
def test_bad_parameters_and_bad_suites_stop_before_anything_runs(app_settings, suites_dir) -> None:
    settings = app_settings(rows=300, validation__expectations_dir=str(suites_dir))
    state, _ = run(fail_on="sometimes")
    assert state.is_failed()
    assert "fail_on" in str(state.result(raise_on_failure=False))
    assert "'critical', 'warning' or 'never'" in str(state.result(raise_on_failure=False))
    path = suites_dir / "prices.json"
    data = json.loads(path.read_text())
    data["expectations"][2]["type"] = "expect_prices_to_be_fair"
    path.write_text(json.dumps(data))
    state, artifacts = run()
    error = state.result(raise_on_failure=False)
    assert state.is_failed() and isinstance(error, ConfigError)
    assert "prices.json, expectation 'amount_positive'" in str(error)
    assert REPORT_KEY not in artifacts  # nothing ran, nothing reported as validated
    assert not (settings.home / "validation-docs").exists()
