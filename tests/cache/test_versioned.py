"""Versioned warms seen from a reader: always a complete generation, old ones removed, and a
Redis outage in the middle of a warm leaves the previous generation current."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import pytest
import redis

from steward.cache import CacheWarmer
from steward.errors import SourceUnavailable
from steward.settings import Settings
from tests.cache import sources
from tests.cache.conftest import RedisServer

ROWS = 3000


def _numbers_settings(make: Callable[..., Settings], db_url: str, redis_url: str) -> Settings:
    warmers = [{"name": "numbers", "source": "tests.cache.sources:numbered_rows",
                "params": {"rows": ROWS}, "key": "n:{id}", "value": "run", "mode": "versioned",
                "namespace": "nums", "ttl_seconds": 600, "batch_size": 250}]  # fmt: skip
    return make(
        database__url=db_url, cache__url=redis_url,
        cache__warmers=json.dumps(warmers), cache__invalidations="[]",
    )  # fmt: skip


@pytest.fixture
def hooks() -> Iterator[dict[str, Callable[[int], None]]]:
    yield sources.HOOKS
    sources.HOOKS.clear()


def _read_generation(client: redis.Redis) -> tuple[bytes | None, list[bytes | None]]:
    pipe = client.pipeline(transaction=True)  # MULTI: pointer and keys from one moment
    pipe.get("steward:nums:current")
    current = client.get("steward:nums:current")
    if current is None:
        return None, []
    for n in range(ROWS):
        pipe.get(f"steward:nums:{current.decode()}:n:{n}")
    replies = pipe.execute()
    if replies[0] != current:
        return None, []  # flipped between our two reads: look again
    return current, replies[1:]


def test_a_reader_only_ever_sees_complete_generations(
    make_settings: Callable[..., Settings], cache_pg_url: str, redis_url: str,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    settings = _numbers_settings(make_settings, cache_pg_url, redis_url)
    warmer = CacheWarmer(settings)
    warmer.warm()
    stop = threading.Event()
    seen: dict[bytes, set[bytes | None]] = {}
    problems: list[str] = []

    def read() -> None:
        reader = redis.Redis.from_url(redis_url)
        while not stop.is_set():
            current, values = _read_generation(reader)
            if current is None:
                continue
            distinct = set(values)
            seen.setdefault(current, set()).update(distinct)
            if len(distinct) != 1 or None in distinct:
                problems.append(f"{current!r}: {len(distinct)} distinct values, None in them")

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for _ in range(5):
            warmer.warm()
    finally:
        stop.set()
        thread.join()
        warmer.close()

    assert problems == []
    assert len(seen) >= 2  # the reader saw several generations go by
    assert redis_client.get("steward:nums:current") == b"v6"
    left = {k.split(b":")[2] for k in redis_client.scan_iter(match="steward:nums:v*")}
    assert left == {b"v6"}  # every older generation is gone
    assert len(list(redis_client.scan_iter(match="steward:nums:v6:*"))) == ROWS


def test_redis_going_down_mid_warm_keeps_the_previous_generation(
    make_settings: Callable[..., Settings], cache_pg_url: str,
    private_redis: RedisServer, hooks: dict[str, Callable[[int], None]],
) -> None:  # fmt: skip
    settings = _numbers_settings(make_settings, cache_pg_url, private_redis.url)
    warmer = CacheWarmer(settings)
    try:
        warmer.warm()
        hooks["row"] = lambda n: private_redis.stop() if n == ROWS // 2 else None
        with pytest.raises(SourceUnavailable) as raised:
            warmer.warm()
        assert "warmer 'numbers'" in str(raised.value)
        hooks.clear()
        private_redis.start()  # the restart: data back from its append-only file

        client = redis.Redis.from_url(private_redis.url)
        assert client.get("steward:nums:current") == b"v1"
        run = client.get("steward:nums:v1:n:0")
        assert all(client.get(f"steward:nums:v1:n:{n}") == run for n in range(0, ROWS, 97))
        partial = list(client.scan_iter(match="steward:nums:v2:*"))
        assert 0 < len(partial) < ROWS  # half a generation, never made current

        report = warmer.warm()[0]  # the rerun finishes the job and cleans up
        assert (report.generation, report.previous_generation) == (3, 1)
        assert {k.split(b":")[2] for k in client.scan_iter(match="steward:nums:v*")} == {b"v3"}
    finally:
        warmer.close()
