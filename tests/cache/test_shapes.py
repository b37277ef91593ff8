"""Cache-aside reads of every shape the warmers write (json, hash, zset), through generation
flips, and fills of each shape on a miss."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import redis

from steward.cache import CacheAside, CacheWarmer
from steward.errors import ConfigError
from steward.settings import Settings


def _first_key(client: redis.Redis, match: str) -> str:
    """The logical key (after steward:catalog:v<n>:) of one key matching ``match``."""
    key = next(iter(client.scan_iter(match=match, count=1000)))
    return str(key.decode().split(":", 3)[3])


def test_every_shape_is_read_without_a_miss_while_generations_flip(
    pg_settings: Settings, redis_client: redis.Redis
) -> None:
    warmer = CacheWarmer(pg_settings)
    warmer.warm(["price-lists"])  # the catalog namespace: tree, top sellers, price lists
    prices = _first_key(redis_client, "steward:catalog:v1:category:*:prices")
    top = _first_key(redis_client, "steward:catalog:v1:category:*:top-sellers")
    reads: list[tuple[str, Any]] = [
        ("hash", prices), ("zset", top), ("json", "category:tree")
    ]  # fmt: skip
    aside = CacheAside(redis_client, "steward:", flush_every=10_000)
    stop = threading.Event()
    misses: list[str] = []
    errors: list[BaseException] = []
    seen: dict[str, list[Any]] = {"hash": [], "zset": [], "json": []}
    generations: set[bytes | None] = set()

    def read() -> None:
        while not stop.is_set():
            for shape, key in reads:
                try:
                    value = aside.get_or_load_versioned(
                        "catalog", key, lambda key=key: misses.append(key), 600, shape=shape
                    )
                except Exception as exc:  # WRONGTYPE before the fix
                    errors.append(exc)
                    return
                seen[shape].append(value)
            generations.add(redis_client.get("steward:catalog:current"))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for _ in range(6):
            warmer.warm(["price-lists"])
    finally:
        stop.set()
        thread.join()
        warmer.close()

    assert errors == [] and misses == []
    assert len(generations) >= 2  # the reader saw generations go by
    assert all(isinstance(v, dict) and v for v in seen["hash"])
    assert all(isinstance(v, list) and v for v in seen["zset"])
    assert all(isinstance(v, list) and v[0]["children"] is not None for v in seen["json"])
    final = redis_client.get("steward:catalog:current").decode()
    stored = redis_client.hgetall(f"steward:catalog:{final}:{prices}")
    assert seen["hash"][-1] == {k.decode(): v.decode() for k, v in stored.items()}
    scores = [s for _, s in seen["zset"][-1]]
    assert scores == sorted(scores, reverse=True)  # highest first


def test_hash_and_zset_fills_and_a_read_of_the_wrong_shape(
    pg_settings: Settings, redis_client: redis.Redis
) -> None:
    aside = CacheAside(redis_client, "steward:")
    prices = {"1": Decimal("9.99"), "2": "5"}
    first = aside.get_or_load("pricebook:eu", lambda: prices, 60, shape="hash")
    second = aside.get_or_load("pricebook:eu", lambda: {"x": "unused"}, 60, shape="hash")
    ranked = aside.get_or_load("best:shoes", lambda: {"a": 3, "b": 5}, 60, shape="zset")
    ranked_again = aside.get_or_load("best:shoes", lambda: {}, 60, shape="zset")

    assert first == second == {"1": "9.99", "2": "5"}  # what a hit returns, from the start
    assert redis_client.hgetall("steward:pricebook:eu") == {b"1": b"9.99", b"2": b"5"}
    assert 0 < redis_client.ttl("steward:pricebook:eu") <= 60
    assert ranked == ranked_again == [("b", 5.0), ("a", 3.0)]
    assert redis_client.zscore("steward:best:shoes", "b") == 5.0
    with pytest.raises(ConfigError) as raised:
        aside.get_or_load("pricebook:eu", lambda: None, 60)
    assert str(raised.value) == (
        "cache key 'steward:pricebook:eu' holds a hash, not a json value; read it with shape='hash'"
    )

    warmer = CacheWarmer(pg_settings)
    try:
        warmer.warm(["price-lists"])
    finally:
        warmer.close()
    filled = aside.get_or_load_versioned(
        "catalog", "category:0:prices", lambda: {"7": "1.50"}, 60, shape="hash"
    )
    assert filled == {"7": "1.50"}
    assert redis_client.hgetall("steward:catalog:v1:category:0:prices") == {b"7": b"1.50"}


def test_a_plain_text_value_column_reads_back_as_text(
    make_settings: Callable[..., Settings], cache_pg_url: str, redis_url: str,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    warmers = [{"name": "names", "query": "SELECT id, name FROM products ORDER BY id LIMIT 3",
                "key": "name:{id}", "value": "name"}]  # fmt: skip
    settings = make_settings(
        database__url=cache_pg_url, cache__url=redis_url, cache__warmers=json.dumps(warmers),
        cache__invalidations="[]",
    )  # fmt: skip
    warmer = CacheWarmer(settings)
    try:
        warmer.warm()
    finally:
        warmer.close()
    key = next(iter(redis_client.scan_iter(match="steward:name:*"))).decode()
    aside = CacheAside(redis_client, "steward:")
    value = aside.get_or_load(key.removeprefix("steward:"), lambda: "loaded", 60)
    assert value == redis_client.get(key).decode() and value != "loaded"
