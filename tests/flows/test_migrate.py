"""The ``migrate`` flow on PostgreSQL under the Prefect test harness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from flows.migrate import migrate
from steward.errors import ConfigError

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def pg_database(make_pg_database: Callable[[], str], make_settings: Callable[..., Any]) -> str:
    url = make_pg_database()
    make_settings(database__url=url)
    return url


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_upgrades_to_head_then_downgrades_one(pg_database: str, run_flow: Callable) -> None:
    summary, artifacts = run_flow(migrate)
    assert summary["from_revision"] is None and summary["to_revision"] == "0005"
    assert [step["revision"] for step in summary["applied"]] == [
        "0001",
        "0002",
        "0003",
        "0004",
        "0005",
    ]
    assert summary["dry_run"] is False and summary["mongo"] is None
    assert "products" in _tables(pg_database)
    assert "versions/2026_11_21_0002_product_ratings.py" in artifacts["migrate-applied"]["data"]

    summary, _ = run_flow(migrate, direction="downgrade")
    assert (summary["from_revision"], summary["to_revision"]) == ("0005", "0004")
    assert [step["revision"] for step in summary["applied"]] == ["0005"]
    assert "products" in _tables(pg_database)


def test_dry_run_writes_sql_and_changes_nothing(pg_database: str, run_flow: Callable) -> None:
    summary, artifacts = run_flow(migrate, dry_run=True)
    assert summary["dry_run"] is True and summary["applied"] == []
    assert summary["planned"] == ["0001", "0002", "0003", "0004", "0005"]
    assert "CREATE TABLE products" in summary["sql"]
    assert "CREATE TABLE products" in artifacts["migrate-dry-run-sql"]["data"]
    assert _tables(pg_database) == []


def test_downgrade_to_head_is_refused_before_anything_runs(
    pg_database: str, run_flow: Callable
) -> None:
    with pytest.raises(ConfigError, match="a downgrade needs a target below the current"):
        run_flow(migrate, direction="downgrade", target="head")
    assert _tables(pg_database) == []


def test_downgrade_to_base_needs_confirmation(pg_database: str, run_flow: Callable) -> None:
    run_flow(migrate)

    with pytest.raises(ConfigError, match="set confirm_downgrade_to_base=true"):
        run_flow(migrate, direction="downgrade", target="base")
    assert "products" in _tables(pg_database)  # nothing was dropped

    summary, artifacts = run_flow(
        migrate, direction="downgrade", target="base", confirm_downgrade_to_base=True
    )
    assert summary["to_revision"] is None and "products" not in _tables(pg_database)
    assert artifacts["migrate-summary"]["description"] == "Migrate downgrade: 0005 -> base"


def test_nothing_to_apply_is_explained(pg_database: str, run_flow: Callable) -> None:
    run_flow(migrate)
    summary, artifacts = run_flow(migrate)

    assert summary["applied"] == []
    assert "0 applied: the database was already at 0005" in artifacts["migrate-summary"]["data"]
    assert "MongoDB: not migrated" in artifacts["migrate-summary"]["data"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lock_timeout_seconds": -5}, "greater than 0"),
        ({"direction": "sideways"}, "'upgrade' or 'downgrade'"),
        ({"dry_run": "maybe"}, "valid boolean"),
    ],
)
def test_bad_parameters_are_refused_by_the_flow(
    pg_database: str, run_flow: Callable, params: dict[str, Any], message: str
) -> None:
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError, match=message):
        run_flow(migrate, **params)
    assert _tables(pg_database) == []
