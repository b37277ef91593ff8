"""Fixtures for the tests of steward.statistics (the folder is not named tests/statistics:
on the test path that would shadow the standard library's ``statistics`` module): the example
schema with autovacuum off on every table (the ``autovacuum_enabled`` storage parameter: the
server's own setting is never touched), filled by the demo generator and never analysed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from steward.demo import generate_demo_data
from steward.migrations import MigrationRunner
from steward.settings import Settings
from steward.storage import create_sql_engine

DEMO_ROWS = 20_000  # products 600, prices ~1,050, orders 2,000, order items ~4,900
MIN_ROWS = "500"  # statistics.min_rows: the demo tables at this scale count as "large"


def autovacuum_off(engine: Engine) -> None:
    """Every table of the public schema: autovacuum_enabled = false (as a real server might)."""
    with engine.begin() as conn:
        names = conn.execute(
            sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        quote = conn.dialect.identifier_preparer.quote
        for name in list(names):
            conn.exec_driver_sql(f"ALTER TABLE {quote(name)} SET (autovacuum_enabled = false)")


def analyze_counts(engine: Engine) -> dict[str, int]:
    """analyze_count per table (manual ANALYZE runs), from pg_stat_user_tables."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT relname, analyze_count FROM pg_stat_user_tables"))
        return {name: int(count) for name, count in rows}


def wait_for_stats(engine: Engine, table: str, minimum: int) -> None:
    """Statistics counters reach the views when each backend flushes them (within a second
    when busy, up to 10 s when idle, on PostgreSQL 15): wait for them."""
    import time

    for _ in range(200):
        if analyze_counts(engine).get(table, 0) >= minimum:
            return
        time.sleep(0.1)


@pytest.fixture
def demo_db(
    make_settings: Callable[..., Settings], make_pg_database: Callable[[], str]
) -> Iterator[tuple[Settings, Engine]]:
    """A fresh database: example schema at head, autovacuum off per table, demo data loaded
    by COPY, no table ever analysed."""
    settings = make_settings(database__url=make_pg_database(), statistics__min_rows=MIN_ROWS)
    runner = MigrationRunner(settings)
    runner.upgrade()
    runner.dispose()
    engine = create_sql_engine(settings)
    autovacuum_off(engine)
    generate_demo_data(settings, rows=DEMO_ROWS, seed=7)
    yield settings, engine
    engine.dispose()


def explain(engine: Engine, query: str, params: dict[str, Any]) -> str:
    with engine.connect() as conn:
        return "\n".join(r[0] for r in conn.execute(sa.text("EXPLAIN " + query), params))
