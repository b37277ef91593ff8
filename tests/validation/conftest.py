"""Fixtures for the validation tests: the example schema with clean demo data on SQLite and
PostgreSQL, the shipped suites (or an editable copy), and helpers that break one invariant."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from steward.demo import generate_demo_data
from steward.migrations import MigrationRunner
from steward.settings import Settings
from steward.storage import create_sql_engine

EXPECTATIONS = Path(__file__).resolve().parents[2] / "expectations"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, make_pg_database: Callable[[], str]) -> str:
    """'' (SQLite under the Steward home) or a fresh PostgreSQL database."""
    return make_pg_database() if request.param == "postgresql" else ""


@pytest.fixture
def suites_dir(tmp_path: Path) -> Path:
    """An editable copy of the shipped suites."""
    target = tmp_path / "expectations"
    shutil.copytree(EXPECTATIONS, target)
    return target


@pytest.fixture
def app_settings(
    database_url: str, make_settings: Callable[..., Settings]
) -> Callable[..., Settings]:
    """Settings on a migrated example schema filled with clean demo data."""

    def make(rows: int = 800, **overrides: Any) -> Settings:
        if database_url:
            overrides["database__url"] = database_url
        overrides.setdefault("validation__expectations_dir", str(EXPECTATIONS))
        settings = make_settings(**overrides)
        runner = MigrationRunner(settings)
        runner.upgrade()
        runner.dispose()
        if rows:
            generate_demo_data(settings, rows=rows, seed=5)
        return settings

    return make


@contextmanager
def connect(settings: Settings) -> Iterator[sa.Connection]:
    """A writable connection (commits at the end) for breaking the data on purpose."""
    engine = create_sql_engine(settings)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def drop_foreign_keys(settings: Settings, table: str) -> None:
    """Make the schema lack a constraint (the case cross-table invariants exist for)."""
    engine = create_sql_engine(settings)
    try:
        if engine.dialect.name == "sqlite":
            return  # foreign keys are off on a plain sqlite3 connection (see insert_unchecked)
        with engine.begin() as conn:
            reflected = sa.Table(table, sa.MetaData(), autoload_with=conn)
            for fk in reflected.foreign_key_constraints:
                conn.execute(sa.schema.DropConstraint(fk))
    finally:
        engine.dispose()


def insert_unchecked(settings: Settings, table: str, row: dict[str, Any]) -> None:
    """Insert without foreign-key checks (SQLite: a connection with foreign_keys=OFF)."""
    if settings.database_url.startswith("sqlite"):
        engine = sa.create_engine(settings.database_url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                reflected = sa.Table(table, sa.MetaData(), autoload_with=conn)
                conn.execute(reflected.insert().values(**row))
        finally:
            engine.dispose()
        return
    drop_foreign_keys(settings, table)
    with connect(settings) as conn:
        reflected = sa.Table(table, sa.MetaData(), autoload_with=conn)
        conn.execute(reflected.insert().values(**row))
