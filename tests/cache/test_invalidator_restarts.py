"""``steward cache invalidate --forever`` outlives a Redis restart and a PostgreSQL restart in the
middle of a warmer rerun (private servers: the machine's own are never touched)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from steward.settings import Settings
from tests.fixtures.private_servers import PrivatePostgres, PrivateRedis

REPO = Path(__file__).resolve().parents[2]
PRODUCT_RULE = {"events": ["product.*"], "keys": ["product:{aggregate_id}"]}
SLOW_QUERY = "SELECT n AS id, pg_sleep(0.2) AS pause FROM generate_series(1, 30) AS n"


class Listener:
    """The CLI process, its stderr in a file the test reads while it runs."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / "invalidate.err"
        env = {**os.environ, "COLUMNS": "200", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "steward"), "cache", "invalidate", "--forever"],
            stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True, cwd=REPO, env=env,
        )  # fmt: skip

    def said(self, text: str) -> bool:
        return text in self.log.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> tuple[int, str]:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=120)
        return self.process.returncode, out


@pytest.fixture
def listen(tmp_path: Path) -> Iterator[Callable[[], Listener]]:
    started: list[Listener] = []

    def start() -> Listener:
        started.append(Listener(tmp_path))
        return started[-1]

    yield start
    for listener in started:
        if listener.alive():
            listener.process.kill()
            listener.process.wait()


def _wait(check: Callable[[], bool], seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except redis.ConnectionError:
            pass
        time.sleep(0.1)
    return False


def _event(client: redis.Redis, product_id: int) -> None:
    """What the relay's Redis sink writes for a ProductUpdated event."""
    client.xadd(
        "steward:events:product",
        {"event_id": f"evt-{product_id}-{time.monotonic_ns()}", "event_type": "ProductUpdated",
         "aggregate_id": str(product_id), "payload": "{}", "seq": "1"},
    )  # fmt: skip


def _joined(client: redis.Redis) -> bool:
    if not client.exists("steward:events:product"):
        return False
    return any(g["name"] == b"steward-cache" for g in client.xinfo_groups("steward:events:product"))


def test_invalidate_forever_survives_a_redis_restart(
    private_redis: PrivateRedis, cache_pg_url: str, make_settings: Callable[..., Settings],
    listen: Callable[[], Listener],
) -> None:  # fmt: skip
    make_settings(
        database__url=cache_pg_url, cache__url=private_redis.url, cache__socket_timeout="2",
        cache__invalidations=json.dumps([PRODUCT_RULE]),
    )  # fmt: skip
    client = redis.Redis.from_url(private_redis.url)
    private_redis.stop()  # away when it starts, too
    listener = listen()
    assert _wait(lambda: listener.said("reconnect attempt"))
    private_redis.start()
    assert _wait(lambda: _joined(client))
    client.set("steward:product:42", "stale")
    _event(client, 42)
    assert _wait(lambda: not client.exists("steward:product:42"))

    said = listener.log.read_text().count("reconnect attempt")
    private_redis.stop()
    assert _wait(lambda: listener.log.read_text().count("reconnect attempt") > said)
    private_redis.start()  # the same keys, streams and group (append-only file)
    client.set("steward:product:43", "stale")
    _event(client, 43)

    assert _wait(lambda: not client.exists("steward:product:43"))
    said = listener.log.read_text().count("reconnect attempt")
    client.flushall()  # as if Redis came back without its data: no stream, no group
    assert _wait(lambda: listener.log.read_text().count("reconnect attempt") > said)
    assert _wait(lambda: _joined(client))  # joined again
    client.set("steward:product:44", "stale")
    _event(client, 44)

    assert _wait(lambda: not client.exists("steward:product:44"))
    assert listener.alive()
    code, out = listener.stop()
    assert code == 0, listener.log.read_text()
    assert listener.said("reconnected after")
    assert "│ events               │ 3" in out and "│ acked                │ 3" in out


def test_invalidate_forever_survives_a_postgres_restart_during_a_warmer_rerun(
    private_postgres: PrivatePostgres, redis_url: str, redis_client: redis.Redis,
    make_settings: Callable[..., Settings], listen: Callable[[], Listener],
) -> None:  # fmt: skip
    db_url = private_postgres.create_database("shop")
    warmers = [{"name": "slow", "query": SLOW_QUERY, "key": "slow:{id}", "value": "id",
                "batch_size": 5}]  # fmt: skip
    rules = [PRODUCT_RULE, {"events": ["category.*"], "warmers": ["slow"]}]
    make_settings(
        database__url=db_url, cache__url=redis_url, cache__warmers=json.dumps(warmers),
        cache__invalidations=json.dumps(rules),
        database__connect_retries="0",
    )  # fmt: skip
    listener = listen()
    assert _wait(lambda: _joined(redis_client))
    redis_client.xadd(
        "steward:events:category",
        {"event_id": "cat-1", "event_type": "CategoryRenamed", "aggregate_id": "1",
         "payload": "{}", "seq": "1"},
    )  # fmt: skip

    assert _wait(lambda: redis_client.exists("steward:slow:1") == 1)  # its first batch is in
    private_postgres.restart()  # while it reads the rest (25 rows, 0.2 s each)

    assert _wait(lambda: not redis_client.exists("steward:reruns:steward-cache"))
    assert listener.alive()
    assert listener.said("warmer rerun failed")  # the rerun that lost its database
    assert redis_client.get("steward:slow:30") == b"30"
    redis_client.set("steward:product:9", "stale")
    _event(redis_client, 9)
    assert _wait(lambda: not redis_client.exists("steward:product:9"))
    assert listener.alive()
    code, out = listener.stop()
    assert code == 0, listener.log.read_text()
    assert "slow" in out  # keys rewarmed, in the totals
