"""Packed RESP batches sent back to back: replies stay in step, errors come back as values."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from steward.settings import Settings
from steward.storage.cache import CacheClient, CommandBatch
from tests.cache.conftest import RedisServer


def test_batches_in_flight_keep_their_replies_in_order(
    make_settings: Callable[..., Settings], redis_url: str, redis_client: redis.Redis
) -> None:
    client = CacheClient(make_settings(cache__url=redis_url))
    redis_client.rpush("steward:a-list", "x")
    sender = client.bulk()
    replies: list[object] = []
    try:
        for start in range(0, 30_000, 3000):  # many batches, replies split across reads
            batch = CommandBatch()
            for n in range(start, start + 3000):
                batch.add_set(b"steward:k:%d" % n, b"v%d" % n, 60 if n % 2 else 0)
            batch.add(b"INCR", b"steward:a-list")  # WRONGTYPE: an error reply mid-stream
            batch.add(b"GET", b"steward:k:%d" % start)
            replies += sender.send(batch)
        replies += sender.flush()
    finally:
        sender.close()

    assert len(replies) == 10 * 3002
    errors = [r for r in replies if isinstance(r, redis.ResponseError)]
    assert len(errors) == 10 and "WRONGTYPE" in str(errors[0])
    assert replies[3001] == b"v0" and replies[-1] == b"v27000"
    assert redis_client.get("steward:k:29999") == b"v29999"
    assert redis_client.ttl("steward:k:1") == 60 and redis_client.ttl("steward:k:2") == -1
    assert client.send_batch(CommandBatch()) == []
    assert client.redis.ping()  # the pooled connection is still usable


def test_a_server_gone_mid_batch_raises_and_the_connection_is_dropped(
    make_settings: Callable[..., Settings], private_redis: RedisServer
) -> None:
    client = CacheClient(make_settings(cache__url=private_redis.url, cache__socket_timeout="2"))
    batch = CommandBatch()
    batch.add_set(b"k", b"v", 0)
    assert client.send_batch(batch) == [b"OK"]
    private_redis.stop()
    batch.add_set(b"k", b"v", 0)
    with pytest.raises(redis.ConnectionError):
        client.send_batch(batch)
    private_redis.start()
    batch.add_set(b"k2", b"v2", 0)
    assert client.send_batch(batch) == [b"OK"]
    assert client.redis.get("k2") == b"v2"
