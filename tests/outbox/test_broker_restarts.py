"""A broker restarts under ``steward outbox relay --forever``: the relay keeps running, retries
with backoff, and once the broker is back every event is there, in order per aggregate.

Each test starts its own broker (a private nats-server, a private RabbitMQ node) and stops
and restarts that one; the machine's brokers are never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.outbox.brokers import (
    PrivateNats,
    PrivateRabbit,
    bind_queue,
    drain_queue,
    read_stream,
    unique,
)
from tests.outbox.test_broker_sinks import assert_ordered

pytestmark = pytest.mark.slow
STEWARD = str(Path(sys.executable).with_name("steward"))
REPO = Path(__file__).resolve().parents[2]


def wait_for(
    condition: Callable[[], bool],
    what: str,
    timeout: float = 90,
    diagnose: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what} {diagnose()}")
        time.sleep(0.2)


@pytest.fixture
def relay_forever() -> Iterator[Callable[[], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [STEWARD, "outbox", "relay", "--forever"],
            cwd=REPO,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _outage_and_recovery(env: Any, broker: Any, relay: subprocess.Popen[str]) -> None:
    """30 events while up, 30 while down (retried meanwhile), then everything once back."""
    env.fill(30, 5)
    wait_for(lambda: not env.rows("status <> 'published'"), "the first 30 events")
    broker.stop()
    env.fill(30, 5)
    wait_for(lambda: bool(env.rows("attempts > 0")), "a failed attempt while the broker is down")
    assert relay.poll() is None, relay.stderr.read() if relay.stderr else ""
    broker.start()
    wait_for(
        lambda: not env.rows("status <> 'published'"),
        "every event after the restart",
        diagnose=lambda: str([(r.status, r.attempts, r.last_error) for r in env.rows()][-3:]),
    )
    relay.send_signal(signal.SIGTERM)
    _, err = relay.communicate(timeout=60)
    assert relay.returncode == 0, err
    assert "delivery problem" in err  # the outage was reported, not hidden
    assert env.rows("status = 'dead'") == []


def test_nats_restart_during_relay_forever(
    outbox_env: Any, relay_forever: Any, tmp_path: Path
) -> None:
    nats = PrivateNats(tmp_path / "nats")
    nats.start()
    stream = unique("RESTART_")
    env = outbox_env.reconfigure(
        outbox__sinks='["nats"]',
        outbox__nats__url=nats.url,
        outbox__nats__stream=stream,
        outbox__broker_timeout_seconds="1",
        outbox__poll_interval_seconds="0.2",
        outbox__max_attempts="1000",  # test-sized backoff: never dead during the outage
    )
    try:
        _outage_and_recovery(env, nats, relay_forever())
        stored = read_stream(stream, url=nats.url)
    finally:
        nats.stop()
    ids = [str(row.id) for row in env.rows()]
    assert sorted(m.event_id for m in stored) == sorted(ids)  # each once: duplicates dropped
    assert_ordered(stored, {str(row.id): row.seq for row in env.rows()})


def test_rabbitmq_restart_during_relay_forever(
    outbox_env: Any, relay_forever: Any, tmp_path: Path
) -> None:
    rabbit = PrivateRabbit(tmp_path)
    rabbit.start()
    exchange = unique("restart-")
    try:
        queue = bind_queue(exchange, url=rabbit.url)  # durable: it outlives the restart
        env = outbox_env.reconfigure(
            outbox__sinks='["rabbitmq"]',
            outbox__rabbitmq__url=rabbit.url,
            outbox__rabbitmq__exchange=exchange,
            outbox__broker_timeout_seconds="2",
            outbox__poll_interval_seconds="0.2",
            outbox__max_attempts="1000",  # test-sized backoff: never dead during the outage
        )
        _outage_and_recovery(env, rabbit, relay_forever())
        delivered = drain_queue(queue, url=rabbit.url)
    finally:
        rabbit.stop()
    ids = {str(row.id) for row in env.rows()}
    assert {m.event_id for m in delivered} == ids  # persistent messages survived the restart
    assert_ordered(delivered, {str(row.id): row.seq for row in env.rows()})
