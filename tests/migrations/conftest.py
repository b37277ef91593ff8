"""Fixtures for the migration runners: databases of both dialects, runners, schema snapshots."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from steward.migrations import DEFAULT_SCRIPT_LOCATION, MigrationRunner
from steward.settings import Settings
from tests.fixtures.steward_install import install_steward


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    install_steward(url)  # what `steward install` does once (PostgreSQL databases come installed)
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(
    request: pytest.FixtureRequest, make_pg_database: Callable[[], str], sqlite_url: str
) -> str:
    """A fresh empty database, once on PostgreSQL and once on SQLite."""
    return make_pg_database() if request.param == "postgresql" else sqlite_url


@pytest.fixture
def make_runner(settings: Settings) -> Iterator[Callable[..., MigrationRunner]]:
    """Build runners on a URL (engines disposed after the test)."""
    runners: list[MigrationRunner] = []

    def make(url: str, **kwargs: Any) -> MigrationRunner:
        runner = MigrationRunner(settings, url=url, **kwargs)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.dispose()


def checksums_table(url: str) -> str:
    """Where ``steward_migrations`` is: Steward's schema on PostgreSQL, the main database on
    SQLite."""
    return "steward_migrations" if url.startswith("sqlite") else "steward.steward_migrations"


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    """A private copy of migrations/ that a test may edit."""
    target = tmp_path / "migrations"
    shutil.copytree(DEFAULT_SCRIPT_LOCATION, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _table_snapshot(inspector: Any, table: str) -> dict[str, Any]:
    return {
        "columns": [
            (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
        ],
        "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
        "indexes": sorted(
            (i["name"], tuple(i["column_names"]), bool(i["unique"]))
            for i in inspector.get_indexes(table)
        ),
        "unique": sorted(
            (u["name"] or "", tuple(u["column_names"]))
            for u in inspector.get_unique_constraints(table)
        ),
        "foreign_keys": sorted(
            (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
            for f in inspector.get_foreign_keys(table)
        ),
        "checks": sorted(c["name"] or "" for c in inspector.get_check_constraints(table)),
    }


def schema_of(url: str) -> dict[str, Any]:
    """Normalised dump of a database's schema: every table's columns, keys and indexes."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            return {t: _table_snapshot(inspector, t) for t in sorted(inspector.get_table_names())}
    finally:
        engine.dispose()


@pytest.fixture
def snapshot_schema() -> Callable[[str], dict[str, Any]]:
    return schema_of


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture
def run_sql() -> Callable[..., list[tuple[Any, ...]]]:
    """Run one SQL statement on a URL in its own transaction and return the rows."""
    return query
