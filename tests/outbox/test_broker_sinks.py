"""The RabbitMQ and NATS JetStream sinks on the machine's brokers: every event delivered with
its id, order kept per aggregate, failures retried then dead, a killed relay's batch deduped
(JetStream) or first seen in order (RabbitMQ). Each test has its own exchange / stream."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steward.outbox import drain
from tests.outbox.brokers import (
    Delivered,
    bind_queue,
    delete_rabbit,
    delete_stream,
    drain_queue,
    free_port,
    nats_ready,
    rabbit_ready,
    read_stream,
    unique,
)


class Killed(Exception):
    """Raised between publishing and marking: the relay 'dies' with its batch sent."""


def _die(_events: Any) -> None:
    raise Killed


def assert_ordered(delivered: list[Delivered], seq_of: dict[str, int]) -> None:
    """The first copy of every event comes after the first copies of its predecessors."""
    first: dict[str, list[int]] = {}
    seen: set[str] = set()
    for message in delivered:
        if message.event_id not in seen:
            seen.add(message.event_id)
            first.setdefault(message.aggregate, []).append(seq_of[message.event_id])
    for seqs in first.values():
        assert seqs == sorted(seqs)


@pytest.fixture
def rabbit(outbox_env: Any) -> Iterator[tuple[Any, str, str]]:
    rabbit_ready()
    exchange = unique("steward-test-ex-")
    queue = bind_queue(exchange)
    env = outbox_env.reconfigure(outbox__sinks='["rabbitmq"]', outbox__rabbitmq__exchange=exchange)
    yield env, exchange, queue
    delete_rabbit(exchange, [queue])


@pytest.fixture
def jetstream(outbox_env: Any) -> Iterator[tuple[Any, str, str]]:
    nats_ready()
    stream, prefix = unique("STEWARD_TEST_"), unique("t")
    env = outbox_env.reconfigure(
        outbox__sinks='["nats"]', outbox__nats__stream=stream, outbox__nats__subject_prefix=prefix
    )
    yield env, stream, prefix
    delete_stream(stream)


def test_rabbitmq_delivers_every_event_persistent_in_order(rabbit: Any) -> None:
    env, _, queue = rabbit
    ids = env.fill(120, 7, types=("order", "user"))
    relay = env.relay()
    try:
        totals = drain(relay.relay_batch)
    finally:
        relay.close()

    assert totals.published == 120 and env.rows("status <> 'published'") == []
    delivered = drain_queue(queue)
    assert sorted(m.event_id for m in delivered) == sorted(ids)
    assert {m.key for m in delivered} == {"order.Changed", "user.Changed"}
    assert all(m.persistent for m in delivered)
    rows = {str(row.id): row for row in env.rows()}
    assert all(json.loads(m.body) == rows[m.event_id].payload for m in delivered)
    assert_ordered(delivered, {k: row.seq for k, row in rows.items()})


def test_rabbitmq_unroutable_events_retry_then_go_dead_then_requeue(rabbit: Any) -> None:
    env, exchange, queue = rabbit
    delete_rabbit(exchange, [queue])  # nobody listens: the broker returns every event
    env.reconfigure(outbox__max_attempts="2")
    env.fill(6, 2)
    relay = env.relay()
    try:
        first = relay.relay_batch()
        assert (first.published, first.retried, first.held) == (0, 2, 4)
        [error] = {row.last_error for row in env.rows("attempts > 0")}
        assert "no queue is bound for routing key 'order.Changed'" in error
        assert "guest" not in error
        time.sleep(0.1)
        assert relay.relay_batch().dead == 2
        assert relay.status()["dead"] == 2

        queue = bind_queue(exchange)
        assert relay.requeue_dead() == 2
        assert drain(relay.relay_batch).published == 6
    finally:
        relay.close()
    assert len(drain_queue(queue)) == 6
    delete_rabbit(exchange, [queue])


def test_rabbitmq_killed_relay_redelivers_and_first_copies_stay_in_order(rabbit: Any) -> None:
    env, _, queue = rabbit
    env.fill(40, 4)
    relay = env.relay()
    try:
        with pytest.raises(Killed):
            relay.relay_batch(limit=25, after_publish=_die)
        assert len(env.rows("status = 'pending'")) == 40  # nothing was marked
        assert drain(relay.relay_batch).published == 40
    finally:
        relay.close()
    delivered = drain_queue(queue)
    assert len(delivered) == 65 and len({m.event_id for m in delivered}) == 40
    assert_ordered(delivered, {str(row.id): row.seq for row in env.rows()})


def test_rabbitmq_unreachable_backs_off_without_leaking_the_password(outbox_env: Any) -> None:
    url = f"amqp://guest:pw-s3cret@127.0.0.1:{free_port()}/"
    env = outbox_env.reconfigure(
        outbox__sinks='["rabbitmq"]',
        outbox__rabbitmq__url=url,
        outbox__broker_timeout_seconds="2",
    )
    env.fill(4, 2)
    relay = env.relay()
    try:
        report = relay.relay_batch()
    finally:
        relay.close()
    assert (report.published, report.retried, report.held) == (0, 2, 2)
    for row in env.rows("attempts > 0"):
        assert "connecting to amqp://***@127.0.0.1" in row.last_error
        assert "pw-s3cret" not in row.last_error


def test_jetstream_stores_each_event_once_even_after_a_killed_relay(jetstream: Any) -> None:
    env, stream, prefix = jetstream
    ids = env.fill(90, 6, types=("order", "user"))
    relay = env.relay()
    try:
        with pytest.raises(Killed):
            relay.relay_batch(limit=50, after_publish=_die)
        assert drain(relay.relay_batch).published == 90
    finally:
        relay.close()

    stored = read_stream(stream)
    assert sorted(m.event_id for m in stored) == sorted(ids)  # the resent 50 were dropped
    assert {m.key for m in stored} == {f"{prefix}.order.Changed", f"{prefix}.user.Changed"}
    rows = {str(row.id): row for row in env.rows()}
    for message in stored:
        row = rows[message.event_id]
        assert json.loads(message.body) == row.payload
        assert message.headers["Steward-Seq"] == str(row.seq)
    assert_ordered(stored, {k: row.seq for k, row in rows.items()})


def test_jetstream_event_over_max_payload_goes_dead_and_holds_its_aggregate(
    jetstream: Any,
) -> None:
    env, stream, _ = jetstream
    env.reconfigure(outbox__max_payload_bytes=str(4 * 1024 * 1024))
    env.fill(1, 1, size=10)
    env.fill(1, 1, size=2 * 1024 * 1024)  # over the server's 1 MB max_payload
    env.fill(1, 1, size=10)
    relay = env.relay()
    try:
        report = relay.relay_batch()
    finally:
        relay.close()
    assert (report.published, report.dead, report.held) == (1, 1, 1)
    [dead] = env.rows("status = 'dead'")
    assert "over the NATS server's max_payload" in dead.last_error
    assert len(read_stream(stream)) == 1


def test_broker_sinks_run_beside_the_stream_and_the_history(jetstream: Any, rabbit: Any) -> None:
    env, stream, _ = jetstream
    _, _, queue = rabbit
    env.reconfigure(outbox__sinks='["redis_streams", "event_history", "rabbitmq", "nats"]')
    ids = env.fill(10, 2)
    relay = env.relay()
    try:
        assert drain(relay.relay_batch).published == 10
    finally:
        relay.close()
    assert sorted(e["event_id"] for e in env.entries()) == sorted(ids)
    assert sorted(m.event_id for m in read_stream(stream)) == sorted(ids)
    assert sorted(m.event_id for m in drain_queue(queue)) == sorted(ids)
    history = list(Path(env.settings.objects_url.removeprefix("file://")).rglob("*.jsonl.gz"))
    lines = [
        json.loads(line)
        for path in history
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]
    assert sorted(line["event_id"] for line in lines) == sorted(ids)
