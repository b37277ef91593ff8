"""Tests stop and restart only servers they started: the machine's PostgreSQL and Redis serve
other test sessions and a developer's own databases."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
import redis

from tests.conftest import PG_ADMIN_URL

REPO = Path(__file__).resolve().parents[1]
# Ways a test could stop or restart a machine-wide server.
MACHINE_SERVER_CONTROL = re.compile(
    r"pg_ctlcluster|systemctl|service\s+postgresql|service\s+redis|redis-cli[^\n]*shutdown"
    r"|\.shutdown\(\s*(nosave|save)?"
)

# A line that stops a server its own test started (an in-process HTTP server) says so.
PRIVATE_MARK = "# private server:"


def machine_postgres_started_at() -> object:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert row is not None
    return row[0]


def test_no_test_or_benchmark_controls_the_machines_servers():
    offenders = []
    for folder in ("tests", "bench"):
        for path in (REPO / folder).rglob("*.py"):
            if path == Path(__file__).resolve():
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                own = "self.server.shutdown()" in line or PRIVATE_MARK in line
                if MACHINE_SERVER_CONTROL.search(line) and not own:
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == [], "use tests/fixtures/private_servers.py instead:\n" + "\n".join(
        offenders
    )


def test_a_private_cluster_restarts_with_its_data_and_leaves_the_machines_server_alone(
    private_postgres,
):
    machine_before = machine_postgres_started_at()
    url = private_postgres.create_database("shop").replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY)")
        conn.execute("INSERT INTO kept SELECT generate_series(1, 10)")
    private_postgres.restart()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (10,)
    private_postgres.stop()
    assert not private_postgres.running()
    assert machine_postgres_started_at() == machine_before


def test_a_private_redis_keeps_its_keys_across_a_restart_and_can_be_killed(make_private_redis):
    server = make_private_redis(password="s3cret")
    client = redis.Redis.from_url(server.url)
    client.set("kept", "1")
    server.restart()
    assert client.get("kept") == b"1"
    server.kill()
    with pytest.raises(redis.ConnectionError):
        client.ping()
