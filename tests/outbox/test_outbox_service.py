"""The long-running relay outlives its dependencies: terminated connections, a PostgreSQL
restart, a Redis restart. It stops only on SIGTERM or a terminal error (exit code 2).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from steward.errors import ConfigError, SourceUnavailable
from steward.outbox import BatchReport, EventSpec, enqueue_many, run_forever
from steward.outbox.service import survivable

REPO = Path(__file__).resolve().parents[2]
STEWARD = [str(Path(sys.executable).with_name("steward"))]  # the console script


def wait_for(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def published(env) -> int:
    with env.engine.connect() as conn:
        query = sa.text("SELECT count(*) FROM outbox WHERE status = 'published'")
        return int(conn.execute(query).scalar_one())


def enqueue_round(env, count: int, tag: str) -> None:
    specs = [EventSpec("order", f"{tag}-{i % 20}", "Placed", {"i": i}) for i in range(count)]
    with env.engine.begin() as conn:
        enqueue_many(conn, specs)


class Relay:
    """``steward outbox relay --forever`` as a process; stderr collected on a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*STEWARD, "outbox", "relay", "--forever", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
            env=dict(os.environ, COLUMNS="300"),
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.reader.join(timeout=10)
        return code, "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def relays():
    started: list[Relay] = []

    def start(*args: str) -> Relay:
        started.append(Relay(*args))
        return started[-1]

    yield start
    for relay in started:
        relay.kill()


def terminate_backends(env) -> int:
    """pg_terminate_backend on every other connection to the test's own database."""
    database = env.settings.database_url.rsplit("/", 1)[1]
    url = env.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


def test_run_forever_waits_out_transient_errors_and_stops_on_terminal_ones(outbox_env):
    relay = outbox_env.relay()
    stop = threading.Event()
    calls, messages = [], []

    def batch() -> BatchReport:
        calls.append(1)
        if len(calls) <= 2:
            raise SourceUnavailable("relaying an outbox batch: database unreachable (refused)")
        if len(calls) == 4:
            stop.set()
        return BatchReport(claimed=1, published=1, drained=True)

    totals = run_forever(relay, stop, relay_batch=batch, on_outage=messages.append)
    assert totals.published == 2 and len(calls) == 4
    assert [m.split("; ")[-1].split(" in ")[0] for m in messages[:2]] == [
        "reconnect attempt 1",
        "reconnect attempt 2",
    ]
    assert messages[2].startswith("outbox relay: reconnected after 2 attempts")

    def refused() -> BatchReport:
        raise ConfigError("outbox.table = 'outbox': no such table in the database")

    with pytest.raises(ConfigError):
        run_forever(relay, threading.Event(), relay_batch=refused, on_outage=messages.append)
    login = SourceUnavailable('database unreachable (FATAL: role "nobody" does not exist)')
    assert not survivable(login) and survivable(SourceUnavailable("server closed the connection"))


def test_relay_forever_survives_terminated_connections(outbox_env, relays):
    env = outbox_env.reconfigure(outbox__poll_interval_seconds="0.5")
    enqueue_round(env, 5_000, "a")
    relay = relays("--batch-size", "100")
    assert wait_for(lambda: published(env) > 0)
    terminated = 0
    for _ in range(20):  # while it is busy: some land mid-batch, some on its LISTEN connection
        terminated += terminate_backends(env)
        time.sleep(0.1)
    assert terminated >= 3
    enqueue_round(env, 50, "b")
    assert wait_for(lambda: published(env) == 5_050), relay.lines[-5:]
    code, err = relay.stop()
    assert code == 0, err
    assert "reconnect attempt 1" in err and "reconnected after" in err
    assert "stopped:" in err and "Traceback" not in err
    assert env.redis.xlen(env.stream("order")) >= 5_050


def test_relay_forever_outlives_a_redis_restart(outbox_env, relays, own_redis):
    own = own_redis
    env = outbox_env.reconfigure(
        cache__url=own.url,
        outbox__sinks='["redis_streams"]',
        outbox__poll_interval_seconds="0.2",
    )
    relay = relays()
    enqueue_round(env, 10, "a")
    assert wait_for(lambda: published(env) == 10)
    own.kill()
    enqueue_round(env, 10, "b")
    assert wait_for(lambda: len(env.rows("attempts > 0")) > 0)  # failing, backing off
    own.start()
    assert wait_for(lambda: published(env) == 20)
    code, err = relay.stop()
    assert code == 0, err
    assert "delivery problem" in err and "ConnectionError" in err


@pytest.mark.parametrize(
    ("url_change", "message"),
    [("/steward_no_such_db", 'database "steward_no_such_db" does not exist'),
     ("role", 'role "steward_no_such_role" does not exist')],
)  # fmt: skip
def test_relay_forever_exits_on_terminal_errors(outbox_env, url_change, message):
    url = outbox_env.settings.database_url
    if url_change == "role":
        url = url.replace("postgres@", "steward_no_such_role@")
    else:
        url = url.rsplit("/", 1)[0] + url_change
    result = subprocess.run(
        [*STEWARD, "outbox", "relay", "--forever"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=dict(os.environ, STEWARD_DATABASE__URL=url),
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_relay_forever_outlives_a_postgresql_restart(
    outbox_env, relays, private_postgres, migrate_schema
):
    """Restarts a private cluster the test created, never the machine's own server."""
    url = private_postgres.create_database("shop")
    engine = sa.create_engine(url)
    migrate_schema(engine)
    outbox_env.engine.dispose()
    env = outbox_env.reconfigure(database__url=url, outbox__poll_interval_seconds="0.5")
    env.engine = engine
    relay = relays()
    enqueue_round(env, 10, "a")
    assert wait_for(lambda: published(env) == 10)
    private_postgres.restart()
    env.engine.dispose()  # the test's own pooled connections died with the server
    enqueue_round(env, 10, "b")  # no NOTIFY reaches a relay that lost its LISTEN: it polls
    assert wait_for(lambda: published(env) == 20), relay.lines[-5:]
    code, err = relay.stop()
    assert code == 0, err
    assert "Traceback" not in err
