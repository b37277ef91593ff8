"""The ``migrate`` flow on PostgreSQL under the Prefect test harness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
import pytest
import sqlalchemy as sa

from flows.migrate import MigrateParams, migrate

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
    summary, artifacts = run_flow(migrate, MigrateParams())
    assert summary["from_revision"] is None and summary["to_revision"] == "0003"
    assert [step["revision"] for step in summary["applied"]] == ["0001", "0002", "0003"]
    assert summary["dry_run"] is False and summary["mongo"] is None
    assert "products" in _tables(pg_database)
    assert "versions/2026_11_21_0002_product_ratings.py" in artifacts["migrate-applied"]["data"]

    summary, _ = run_flow(migrate, MigrateParams(direction="downgrade"))
    assert (summary["from_revision"], summary["to_revision"]) == ("0003", "0002")
    assert [step["revision"] for step in summary["applied"]] == ["0003"]
    assert "brand_normalization_backup" not in _tables(pg_database)


def test_dry_run_writes_sql_and_changes_nothing(pg_database: str, run_flow: Callable) -> None:
    summary, artifacts = run_flow(migrate, MigrateParams(dry_run=True))
    assert summary["dry_run"] is True and summary["applied"] == []
    assert summary["planned"] == ["0001", "0002", "0003"]
    assert "CREATE TABLE products" in summary["sql"]
    assert "CREATE TABLE products" in artifacts["migrate-dry-run-sql"]["data"]
    assert _tables(pg_database) == []


def test_downgrade_needs_a_target_below_head() -> None:
    assert MigrateParams(direction="downgrade").target == "-1"
    assert MigrateParams(direction="downgrade", target="base").target == "base"
    with pytest.raises(pydantic.ValidationError, match="a downgrade needs a target"):
        MigrateParams(direction="downgrade", target="head")
