"""The validate-data flow: a critical failure fails the run, a warning does not; artifacts carry
the counts and failing keys; Data Docs pages in the object store name the failures and the
report links to them; a bad suite stops the run before anything executes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

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
    url = summary["data_docs_url"]  # S3: a presigned link (https:// on a real endpoint)
    assert url.startswith(moto_endpoint) and "Signature=" in url and "Expires=" in url
    assert summary["data_docs_expires"]
    assert f"stop working at {summary['data_docs_expires']} UTC" in artifacts[REPORT_KEY]["data"]


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
    store = open_object_store(settings)
    page_key = next(
        k.key for k in store.list("docs/validation/runs/") if k.key.endswith("/orders.html")
    )
    page = store.get_bytes(page_key).decode()
    assert "total_equals_items" in page and "Order total equals the sum of its items" in page
    assert "<code>{&quot;id&quot;: 11" in page  # the failing row's key
    assert store.exists("docs/validation/index.html")
    link = error.summary["data_docs_pages"]["orders"]
    assert link.startswith("file://") and link.endswith("/orders.html")
    assert f"[orders (failed)]({link})" in report


@sqlite_only
def test_a_warning_leaves_the_run_completed_with_the_warning_listed(app_settings) -> None:
    settings = app_settings()
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S.%f")
    last_of_its_aggregate = (
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
def test_outbox_lag_past_the_critical_threshold_fails_the_run(app_settings) -> None:
    settings = app_settings()
    with connect(settings) as conn:  # seq 2 was created weeks ago: the relay is down
        conn.execute(
            sa.text("UPDATE outbox SET status = 'pending', published_at = NULL WHERE seq = 2")
        )
    state, artifacts = run(suites=["outbox"], docs=False, scrub_objects=0)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert "outbox/pending_within_critical_lag (1)" in str(error)
    failures = {f["expectation"]: f for f in error.summary["failures"]}
    assert failures["pending_within_critical_lag"]["severity"] == "critical"
    assert failures["pending_within_critical_lag"]["sample"][0]["seq"] == 2
    assert failures["pending_within_lag"]["severity"] == "warning"


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
    assert not open_object_store(settings).exists("docs/validation/index.html")
