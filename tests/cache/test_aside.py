"""Cache-aside: one loader for a cold key under 50 callers, hit ratio from a scripted pattern."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis

from steward.cache import CacheAside, CacheWarmer, get_or_load, read_stats
from steward.settings import Settings
from tests.fixtures.private_servers import PrivateRedis


def test_fifty_concurrent_calls_on_a_cold_key_run_the_loader_once(
    redis_client: redis.Redis,
) -> None:
    aside = CacheAside(redis_client, "steward:", lock_ms=10_000)
    calls: list[int] = []
    start = threading.Barrier(50)

    def loader() -> dict[str, object]:
        calls.append(1)
        time.sleep(0.3)  # a slow query: the others arrive while it runs
        return {"id": 7, "price": "19.99"}

    def call(_: int) -> object:
        start.wait()
        return aside.get_or_load("product:7", loader, ttl=60)

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(call, range(50)))

    assert len(calls) == 1
    assert results == [{"id": 7, "price": "19.99"}] * 50
    assert 0 < redis_client.ttl("steward:product:7") <= 60
    assert redis_client.exists("steward:lock:product:7") == 0  # the lock was released


def test_hit_ratio_matches_a_scripted_access_pattern(
    make_settings: Callable[..., Settings], redis_url: str, redis_client: redis.Redis
) -> None:
    settings = make_settings(cache__url=redis_url)
    aside = CacheAside(redis_client, "steward:", flush_every=1000, flush_seconds=3600)
    # 4 users read 5 times each (1 miss + 4 hits); 2 orders are read once each (2 misses).
    for _ in range(5):
        for user in range(4):
            aside.get_or_load(f"user:{user}", lambda: {"ok": True}, ttl=60)
    for order in range(2):
        aside.get_or_load(f"order:{order}", lambda: [1, 2], ttl=60)
    before = redis_client.hgetall("steward:stats:user")
    aside.flush_stats()

    stats = {n.namespace: n for n in read_stats(settings).namespaces}
    assert before == {}  # buffered until the flush: one pipeline, not one call per read
    assert (stats["user"].hits, stats["user"].misses, stats["user"].hit_ratio) == (16, 4, 0.8)
    assert (stats["order"].hits, stats["order"].misses, stats["order"].hit_ratio) == (0, 2, 0.0)
    assert stats["user"].keys == 4 and stats["order"].keys == 2
    assert read_stats(settings).as_dict()["hit_ratio"] == round(16 / 22, 4)


def test_module_level_get_or_load_uses_the_settings(
    make_settings: Callable[..., Settings], redis_url: str, redis_client: redis.Redis
) -> None:
    settings = make_settings(cache__url=redis_url, cache__key_prefix="shop:")
    first = get_or_load("cart:1", lambda: {"items": 3}, 30, settings=settings)
    second = get_or_load("cart:1", lambda: {"items": 99}, 30, settings=settings)
    assert first == second == {"items": 3}
    assert redis_client.get("shop:cart:1") == b'{"items":3}'


def test_redis_down_serves_from_the_loader() -> None:
    offline = redis.Redis(port=1, socket_connect_timeout=0.5)
    aside = CacheAside(offline, "steward:")
    assert aside.get_or_load("product:1", lambda: {"fresh": True}, 60) == {"fresh": True}
    assert aside.get_or_load_versioned("catalog", "x", lambda: 5, 60) == 5


def test_versioned_reads_follow_the_current_generation(
    pg_settings: Settings, redis_client: redis.Redis
) -> None:
    aside = CacheAside(redis_client, "steward:", flush_every=1)
    assert aside.get_or_load_versioned("catalog", "category:tree", lambda: "cold", 60) == "cold"
    warmer = CacheWarmer(pg_settings)
    try:
        warmer.warm(["category-tree"])
    finally:
        warmer.close()

    tree = aside.get_or_load_versioned("catalog", "category:tree", lambda: "unused", 60)
    missing = aside.get_or_load_versioned("catalog", "category:none", lambda: {"x": 1}, 60)

    assert isinstance(tree, list) and tree[0]["children"]
    assert missing == {"x": 1}
    assert redis_client.get("steward:catalog:v1:category:none") == b'{"x":1}'
    assert redis_client.hgetall("steward:stats:catalog") == {b"hits": b"1", b"misses": b"2"}


def test_redis_gone_while_loading_runs_the_loader_once(private_redis: PrivateRedis) -> None:
    client = redis.Redis.from_url(private_redis.url, socket_timeout=2, socket_connect_timeout=2)
    aside = CacheAside(client, "steward:")
    calls: list[int] = []

    def loader() -> dict[str, int]:
        calls.append(1)
        private_redis.stop()  # Redis goes away between the miss and the fill
        return {"id": 3}

    assert aside.get_or_load("product:3", loader, 60) == {"id": 3}
    assert calls == [1]  # served uncached, not loaded a second time
    private_redis.start()
    assert client.exists("steward:product:3") == 0
