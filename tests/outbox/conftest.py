"""Fixtures for the outbox tests: one migrated PostgreSQL database for the module run, emptied
before each test, settings pointing at it, the session's Redis db and a folder object store.

``relay_worker.py`` next to this file is the relay process the multi-process tests start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from steward.outbox import EventSpec, OutboxRelay, enqueue_many
from steward.settings import Settings
from steward.storage import create_sql_engine
from tests.fixtures.private_servers import PrivateRedis

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("relay_worker.py")
PG_ADMIN_URL = os.environ.get("STEWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def migrate(engine: sa.Engine) -> None:
    """Create the example schema (revision 0001 holds the outbox) through Alembic."""
    cfg = Config(toml_file=str(REPO / "pyproject.toml"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")


@pytest.fixture(scope="session")
def migrate_schema() -> Callable[[sa.Engine], None]:
    """Create the example schema on an engine (for tests with their own database)."""
    return migrate


@pytest.fixture(scope="session")
def outbox_pg_url(session_pg_database: Callable[[], str]) -> str:
    """A PostgreSQL database with the example schema, shared by the outbox tests."""
    url = session_pg_database()
    engine = sa.create_engine(url)
    migrate(engine)
    engine.dispose()
    return url


@dataclass
class OutboxEnv:
    """What a test needs: settings, an engine on the outbox database, the Redis client."""

    settings: Settings
    engine: sa.Engine
    redis: redis.Redis
    make: Callable[..., Settings]
    base: dict[str, Any]

    def relay(self) -> OutboxRelay:
        return OutboxRelay.from_settings(self.settings)

    def reconfigure(self, **overrides: Any) -> OutboxEnv:
        """New settings (on top of the test's base ones) exported to the environment."""
        self.settings = self.make(**{**self.base, **overrides})
        return self

    def stream(self, aggregate_type: str) -> str:
        cfg = self.settings
        return f"{cfg.cache.key_prefix}{cfg.outbox.stream_key_prefix}{aggregate_type}"

    def fill(
        self, count: int, aggregates: int, *, types: Sequence[str] = ("order",), size: int = 40
    ) -> list[str]:
        """Enqueue ``count`` events round-robin over ``aggregates`` ids per type; their ids."""
        specs = [
            EventSpec(
                types[i % len(types)],
                f"agg-{(i // len(types)) % aggregates}",
                "Changed",
                {"n": i, "pad": "x" * size},
            )
            for i in range(count)
        ]
        with self.engine.begin() as conn:
            return [str(event_id) for event_id in enqueue_many(conn, specs)]

    def rows(self, where: str = "TRUE") -> list[sa.Row[Any]]:
        query = f"SELECT * FROM outbox WHERE {where} ORDER BY seq"  # test-only literal SQL
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(query)))

    def entries(self, aggregate_type: str = "order") -> list[dict[str, str]]:
        """Every entry of a stream as decoded fields, in stream order."""
        raw = self.redis.xrange(self.stream(aggregate_type))
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in raw]


@pytest.fixture
def outbox_env(
    outbox_pg_url: str,
    redis_url: str,
    redis_client: redis.Redis,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> Iterator[OutboxEnv]:
    """An empty outbox on PostgreSQL, the session's Redis db and a folder object store."""
    base = {
        "database__url": outbox_pg_url,
        "cache__url": redis_url,
        "objects__url": (tmp_path / "objects").as_uri(),
        "outbox__backoff_base_seconds": "0.01",
        "outbox__backoff_max_seconds": "0.05",
    }
    settings = make_settings(**base)
    engine = create_sql_engine(settings)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE outbox RESTART IDENTITY"))
    yield OutboxEnv(settings, engine, redis_client, make_settings, base)
    engine.dispose()


class Workers:
    """Starts ``relay_worker.py`` in new Python processes with this process's environment."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=dict(os.environ),
        )
        self.started.append(process)
        return process

    def run(self, *args: str, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
        """Run one worker to the end: exit code, its JSON report (if any), stderr."""
        process = self.start(*args)
        out, err = process.communicate(timeout=timeout)
        return process.returncode, json.loads(out) if out.strip() else {}, err


@pytest.fixture
def workers() -> Iterator[Workers]:
    """Relay worker processes; any still running after the test are killed."""
    pool = Workers()
    yield pool
    for process in pool.started:
        if process.poll() is None:
            process.kill()
            process.wait()


PASSWORD = "s3cret-pw"


@pytest.fixture
def own_redis(make_private_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    """A private redis-server (password, append-only file) the test may kill and restart."""
    return make_private_redis(password=PASSWORD)
