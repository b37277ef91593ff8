"""Warmer rows read one batch ahead on a thread: bounded, errors raised to the caller, stopped
when the caller stops, and a warm over many small batches writes every row."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from steward.cache import CacheWarmer
from steward.cache.rows import Prefetched
from steward.settings import Settings


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "steward-warmer-rows" and t.is_alive()]


def _batches(pulled: list[int], count: int, fail_at: int | None = None) -> Iterator[list[tuple]]:
    for number in range(count):
        if number == fail_at:
            raise ConnectionError("server closed the connection unexpectedly")
        pulled.append(number)
        yield [(number, i) for i in range(3)]


def _settled(pulled: list[int], expected: int) -> None:
    for _ in range(200):  # the thread hands one batch and waits for room: wait till it does
        if len(pulled) >= expected:
            return
        time.sleep(0.01)


def test_reads_at_most_two_batches_ahead_and_stops_with_the_caller() -> None:
    pulled: list[int] = []
    ahead = Prefetched(_batches(pulled, 1000))
    rows = iter(ahead)

    assert next(rows) == (0, 0)
    _settled(pulled, 3)
    assert len(pulled) <= 3  # the batch in use, one handed over, one waiting for room
    ahead.close()
    assert _reader_threads() == []
    assert len(pulled) <= 3


def test_every_row_comes_in_order_and_a_source_error_reaches_the_caller() -> None:
    whole = Prefetched(_batches([], 50))
    assert list(whole) == [(n, i) for n in range(50) for i in range(3)]

    failing = Prefetched(_batches([], 50, fail_at=7))
    seen = []
    with pytest.raises(ConnectionError, match="closed the connection"):
        for row in failing:
            seen.append(row)
    assert len(seen) == 7 * 3
    failing.close()
    assert _reader_threads() == []


def test_a_warm_in_small_batches_writes_every_row_and_leaves_no_reader(
    make_settings: Callable[..., Settings], cache_pg_url: str, redis_url: str,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    warmer = {"name": "ids", "query": "SELECT id, sku FROM products", "key": "p:{id}",
              "batch_size": 7}  # fmt: skip
    settings = make_settings(
        database__url=cache_pg_url, cache__url=redis_url,
        cache__warmers=json.dumps([warmer]), cache__invalidations="[]",
    )  # fmt: skip
    cache = CacheWarmer(settings)
    try:
        (unit,) = cache.warm()
    finally:
        cache.close()

    written = unit.warmers[0].keys
    assert written > 7 * 3 and len(list(redis_client.scan_iter(match="steward:p:*"))) == written
    assert _reader_threads() == []
