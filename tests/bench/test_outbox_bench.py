"""``bench.outbox``: a run counts only when every event reached the streams, so the streams must
be cleared before the outbox is loaded: long-running relays publish as soon as it commits."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest

from bench import outbox as bench
from bench.outbox_workers import STREAM_PREFIX, raw_relay
from tests.fixtures.private_servers import PrivateRedis


def test_events_relayed_while_the_outbox_loads_count_as_delivered(
    make_pg_database: Callable[[], str],
    private_redis: PrivateRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conninfo = make_pg_database().replace("postgresql+psycopg://", "postgresql://", 1)
    bench.create_outbox(conninfo)
    args = argparse.Namespace(
        conninfo=conninfo, redis_url=private_redis.url, events=400, aggregates=20,
        batch_size=100, max_aggregates=50, maxlen=10_000,
    )  # fmt: skip
    loaded = bench.fill

    def load_then_relay_at_once(*fill_args: Any) -> None:
        loaded(*fill_args)
        # A deployed relay polls too: it publishes the events as soon as the load commits,
        # before the benchmark's NOTIFY.
        raw_relay(conninfo, private_redis.url, 100, 50, 10_000)

    monkeypatch.setattr(bench, "fill", load_then_relay_at_once)

    run = bench.time_served_run(args)

    assert run["duplicates"] == 0
    import redis

    client = redis.Redis.from_url(private_redis.url)
    on_streams = sum(client.xlen(STREAM_PREFIX + kind) for kind in ("order", "product"))
    client.close()
    assert on_streams == 400
