"""The broker sinks beside their raw clients: ``python -m bench.outbox --brokers rabbitmq,nats``.

For each broker, in the same run and on the same events (N events over A aggregates per type,
two types, the benchmark's payloads), interleaved over ``--repeat`` runs:

- ``raw client``: the client library alone (aio-pika / nats-py) publishing the same messages
  (body, properties, headers) with the same guarantee, a broker confirmation (publisher
  confirm / JetStream ack) awaited for each, ``--in-flight`` at once, and no ordering rule at
  all: the fastest way to get the same messages confirmed;
- ``Steward sink``: :class:`RabbitMQSink` / :class:`JetStreamSink` ``publish`` on the same
  events in batches of ``--batch-size`` (order kept per aggregate: each event waits for its
  predecessor's confirmation);
- ``Steward relay``: ``OutboxRelay.relay_batch`` end to end with that sink alone, from a
  filled PostgreSQL outbox (claim, publish, mark): what a deployed relay achieves.

Each broker gets a fresh exchange + bound queue / stream per run, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from steward.outbox import OutboxEvent, OutboxRelay, drain
from steward.outbox.broker_sinks import build_broker_sink
from steward.settings import load_settings

RABBIT_URL = os.environ.get("STEWARD_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("STEWARD_TEST_NATS", "nats://127.0.0.1:4222")

__all__ = ["run_brokers", "print_brokers"]


def bind_queue(exchange: str) -> str:
    """The durable topic exchange and a durable queue bound to it with ``#``."""
    import aio_pika

    queue = f"{exchange}-q"

    async def run() -> None:
        async with await aio_pika.connect(RABBIT_URL) as connection:
            channel = await connection.channel()
            ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            await (await channel.declare_queue(queue, durable=True)).bind(ex, "#")

    asyncio.run(run())
    return queue


def delete_rabbit(exchange: str, queues: list[str]) -> None:
    import aio_pika

    async def run() -> None:
        async with await aio_pika.connect(RABBIT_URL) as connection:
            channel = await connection.channel()
            for name in queues:
                await channel.queue_delete(name)
            await channel.exchange_delete(exchange)

    asyncio.run(run())


def delete_stream(stream: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    async def run() -> None:
        client = await nats.connect(NATS_URL)
        try:
            await client.jetstream().delete_stream(stream)
        except NotFoundError:
            pass
        finally:
            await client.close()

    asyncio.run(run())


def make_events(count: int, aggregates: int) -> list[OutboxEvent]:
    now = datetime.now(UTC)
    events = []
    for i in range(count):
        kind = ("order", "product")[i % 2]
        payload = json.dumps({"n": i, "sku": f"SKU-{i % 997:05d}", "qty": i % 7,
                              "price": "19.90", "note": "x" * 120})  # fmt: skip
        events.append(
            OutboxEvent(i + 1, str(uuid.uuid4()), kind, f"{kind}-{(i // 2) % aggregates}",
                        "Changed", payload, '{"source": "bench"}', 0, now)
        )  # fmt: skip
    return events


async def _raw_rabbit(events: list[OutboxEvent], exchange: str, in_flight: int) -> float:
    import aio_pika

    connection = await aio_pika.connect(RABBIT_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        gate = asyncio.Semaphore(in_flight)

        async def one(ev: OutboxEvent) -> None:
            async with gate:
                headers = {
                    "aggregate_type": ev.aggregate_type,
                    "aggregate_id": ev.aggregate_id,
                    "seq": ev.seq,
                    "occurred_at": ev.created_at.isoformat(),
                    "event_headers": ev.headers,
                }  # the same message the sink sends
                message = aio_pika.Message(
                    ev.payload.encode(), headers=headers, message_id=ev.event_id,
                    type=ev.event_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type="application/json", timestamp=ev.created_at,
                )  # fmt: skip
                await ex.publish(message, f"{ev.aggregate_type}.{ev.event_type}")

        started = time.perf_counter()  # connected and declared: only publishing is timed
        await asyncio.gather(*(one(ev) for ev in events))
        return time.perf_counter() - started


async def _raw_nats(events: list[OutboxEvent], stream: str, prefix: str, in_flight: int) -> float:
    import nats

    client = await nats.connect(NATS_URL)
    try:
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[f"{prefix}.>"])
        gate = asyncio.Semaphore(in_flight)

        async def one(ev: OutboxEvent) -> None:
            async with gate:
                headers = {
                    "Nats-Msg-Id": ev.event_id,
                    "Steward-Event-Type": ev.event_type,
                    "Steward-Aggregate-Type": ev.aggregate_type,
                    "Steward-Aggregate-Id": ev.aggregate_id,
                    "Steward-Seq": str(ev.seq),
                    "Steward-Occurred-At": ev.created_at.isoformat(),
                    "Steward-Event-Headers": ev.headers or "",
                }  # as the sink sends
                await js.publish(
                    f"{prefix}.{ev.aggregate_type}.{ev.event_type}", ev.payload.encode(),
                    headers=headers,
                )  # fmt: skip

        started = time.perf_counter()
        await asyncio.gather(*(one(ev) for ev in events))
        return time.perf_counter() - started
    finally:
        await client.close()


def _settings(broker: str, target: str, database_url: str, args: Any) -> Any:
    outbox: dict[str, Any] = {
        "sinks": [broker],
        "batch_size": args.batch_size,
        "max_aggregates_per_batch": args.max_aggregates,
        "broker_max_in_flight": args.in_flight,
    }
    if broker == "rabbitmq":
        outbox["rabbitmq"] = {"url": RABBIT_URL, "exchange": target}
    else:
        outbox["nats"] = {"url": NATS_URL, "stream": target, "subject_prefix": target.lower()}
    return load_settings(database={"url": database_url}, outbox=outbox)


def _timed(run: Any) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _one_run(broker: str, kind: str, events: list[OutboxEvent], args: Any) -> float:
    """Events per second of one run of ``kind`` on ``broker`` (fresh exchange / stream)."""
    target = f"BENCH_{uuid.uuid4().hex[:10]}"
    queue = bind_queue(target) if broker == "rabbitmq" else None
    settings = _settings(broker, target, args.database_url, args)
    try:
        if kind == "raw client":
            coro = (
                (lambda: _raw_rabbit(events, target, args.in_flight))
                if broker == "rabbitmq"
                else (lambda: _raw_nats(events, target, target.lower(), args.in_flight))
            )
            seconds = asyncio.run(coro())
        elif kind == "Steward sink":
            sink = build_broker_sink(settings, broker)
            sink.publish(events[:10])  # connect and declare outside the clock
            size = args.batch_size
            seconds = _timed(
                lambda: [sink.publish(events[i : i + size]) for i in range(0, len(events), size)]
            )
            sink.close()  # type: ignore[attr-defined]
        else:
            args.refill()
            relay = OutboxRelay.from_settings(settings)
            relay.sinks[0].publish(events[:10])
            seconds = _timed(lambda: drain(relay.relay_batch))
            relay.close()
    finally:
        if broker == "rabbitmq":
            delete_rabbit(target, [queue] if queue else [])
        else:
            delete_stream(target)
    return len(events) / seconds


KINDS = ("raw client", "Steward sink", "Steward relay")


def run_brokers(brokers: list[str], args: Any) -> list[dict[str, Any]]:
    """Every kind on every broker, ``args.repeat`` times, interleaved."""
    events = make_events(args.events, args.aggregates)
    rates: dict[tuple[str, str], list[float]] = {(b, k): [] for b in brokers for k in KINDS}
    for _ in range(args.repeat):
        for broker in brokers:
            for kind in KINDS:
                rate = _one_run(broker, kind, events, args)
                rates[(broker, kind)].append(rate)
                print(f"  {broker} {kind}: {rate:,.0f} events/s", file=sys.stderr)
    return [
        {"broker": b, "kind": k, "best": max(r), "median": statistics.median(r)}
        for (b, k), r in rates.items()
    ]


def print_brokers(rows: list[dict[str, Any]], args: Any) -> None:
    raw = {row["broker"]: row for row in rows if row["kind"] == "raw client"}
    print(f"\nbroker sinks: {args.events:,} events, {args.aggregates:,} aggregates per type, "
          f"{args.in_flight} in flight, batches of {args.batch_size}, confirmations awaited, "
          f"best and median of {args.repeat} runs")  # fmt: skip
    print(f"{'broker':<10}{'what':<16}{'best ev/s':>11}{'median ev/s':>13}{'x raw (median)':>16}")
    for row in rows:
        ratio = row["median"] / raw[row["broker"]]["median"]
        print(f"{row['broker']:<10}{row['kind']:<16}{row['best']:>11,.0f}"
              f"{row['median']:>13,.0f}{ratio:>16.2f}")  # fmt: skip
