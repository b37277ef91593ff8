"""Cache-aside for applications: ``get_or_load(key, loader, ttl)`` with stampede protection.

On a miss, one caller takes a short lock (``SET NX PX cache.lock_ms``) and runs the loader;
the others poll the key until it appears (or the lock goes away, then one of them takes it).
So 50 concurrent calls on a cold key run the loader once. Values are stored as JSON.

Hits and misses are counted per namespace (the key's first segment unless given) in the hash
``{prefix}stats:{namespace}``. Counts are buffered in the process and sent as one pipeline of
``HINCRBY`` every ``flush_every`` calls or ``flush_seconds``, and by :meth:`CacheAside.flush_stats`.

If Redis is unreachable the loader runs and its value is returned uncached: the cache is an
optimisation, never a reason for a read to fail.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import redis

from steward.cache.keyspace import KeySpace
from steward.cache.writer import encode_json
from steward.settings import Settings, get_settings
from steward.storage.cache import CacheClient

__all__ = ["CacheAside", "get_or_load", "get_or_load_versioned"]

# Deletes the lock only when it still holds our token (it may have expired and moved on).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_OFFLINE = (redis.ConnectionError, redis.TimeoutError)


class CacheAside:
    """Cache-aside reads over one Redis client and key prefix (thread-safe)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        lock_ms: int = 5000,
        poll_seconds: float = 0.01,
        flush_every: int = 100,
        flush_seconds: float = 1.0,
    ) -> None:
        self.client = client
        self.keyspace = KeySpace(client, prefix)
        self.lock_ms = lock_ms
        self.poll_seconds = poll_seconds
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._release = client.register_script(_RELEASE)
        self._counts: dict[str, list[int]] = {}
        self._pending = 0
        self._flushed_at = time.monotonic()
        self._lock = threading.Lock()

    def get_or_load(
        self, key: str, loader: Callable[[], Any], ttl: int, *, namespace: str | None = None
    ) -> Any:
        """The value of ``key`` (under the prefix), loading and caching it on a miss."""
        full = self.keyspace.key(key)
        space = namespace or key.split(":", 1)[0]
        try:
            raw = self.client.get(full)
        except _OFFLINE:
            return loader()
        if raw is not None:
            self._count(space, hit=True)
            return orjson.loads(raw)
        self._count(space, hit=False)
        return self._load(full, key, loader, ttl)

    def get_or_load_versioned(
        self, namespace: str, key: str, loader: Callable[[], Any], ttl: int
    ) -> Any:
        """Like :meth:`get_or_load`, for ``key`` in ``namespace``'s current generation."""
        try:
            generation, raw = self.keyspace.read_versioned(namespace, key)
        except _OFFLINE:
            return loader()
        if raw is not None:
            self._count(namespace, hit=True)
            return orjson.loads(raw)
        self._count(namespace, hit=False)
        if generation is None:  # nothing warmed yet: there is no generation to fill
            return loader()
        full = self.keyspace.generation_prefix(namespace, generation) + key
        return self._load(full, f"{namespace}:{key}", loader, ttl)

    def _load(self, full: str, key: str, loader: Callable[[], Any], ttl: int) -> Any:
        lock = self.keyspace.key(f"lock:{key}")
        token = uuid.uuid4().hex
        deadline = time.monotonic() + 2 * self.lock_ms / 1000
        try:
            while time.monotonic() < deadline:
                if self.client.set(lock, token, nx=True, px=self.lock_ms):
                    return self._load_locked(full, lock, token, loader, ttl)
                raw = self._wait(full, lock)
                if raw is not None:
                    return orjson.loads(raw)
        except _OFFLINE:
            pass
        return loader()  # lock holder stuck or Redis gone: serve the caller anyway

    def _load_locked(
        self, full: str, lock: str, token: str, loader: Callable[[], Any], ttl: int
    ) -> Any:
        try:
            raw = self.client.get(full)  # filled while we were taking the lock?
            if raw is not None:
                return orjson.loads(raw)
            value = loader()
            self.client.set(full, encode_json(value), ex=ttl or None)
            return value
        finally:
            self._release(keys=[lock], args=[token])

    def _wait(self, full: str, lock: str) -> bytes | None:
        """Poll until the key is filled (its value) or the lock is gone (None)."""
        while True:
            time.sleep(self.poll_seconds)
            pipe = self.client.pipeline(transaction=False)
            pipe.get(full)
            pipe.exists(lock)
            raw, locked = pipe.execute()
            if raw is not None or not locked:
                return raw  # type: ignore[no-any-return]

    # Hit / miss counters ------------------------------------------------------------------
    def _count(self, namespace: str, *, hit: bool) -> None:
        with self._lock:
            counts = self._counts.setdefault(namespace, [0, 0])
            counts[0 if hit else 1] += 1
            self._pending += 1
            due = self._pending >= self.flush_every
            due = due or time.monotonic() - self._flushed_at >= self.flush_seconds
        if due:
            self.flush_stats()

    def flush_stats(self) -> None:
        """Send the buffered hit / miss counts (one pipeline of HINCRBY)."""
        with self._lock:
            counts, self._counts, self._pending = self._counts, {}, 0
            self._flushed_at = time.monotonic()
        if not counts:
            return
        pipe = self.client.pipeline(transaction=False)
        for namespace, (hits, misses) in counts.items():
            stats = self.keyspace.stats_key(namespace)
            if hits:
                pipe.hincrby(stats, "hits", hits)
            if misses:
                pipe.hincrby(stats, "misses", misses)
        try:
            pipe.execute()
        except _OFFLINE:
            self._restore(counts)

    def _restore(self, counts: dict[str, list[int]]) -> None:
        with self._lock:  # keep them for the next flush rather than lose them
            for namespace, (hits, misses) in counts.items():
                mine = self._counts.setdefault(namespace, [0, 0])
                mine[0] += hits
                mine[1] += misses


_DEFAULT: dict[tuple[str, str, str], CacheAside] = {}
_DEFAULT_LOCK = threading.Lock()


def _default(settings: Settings | None) -> CacheAside:
    settings = settings or get_settings()
    key = (settings.cache.url.get_secret_value(), settings.cache.key_prefix, str(settings.home))
    with _DEFAULT_LOCK:
        if key not in _DEFAULT:
            client = CacheClient(settings)
            _DEFAULT[key] = CacheAside(client.redis, client.prefix, lock_ms=settings.cache.lock_ms)
        return _DEFAULT[key]


def get_or_load(
    key: str,
    loader: Callable[[], Any],
    ttl: int,
    *,
    namespace: str | None = None,
    settings: Settings | None = None,
) -> Any:
    """``key``'s cached value, or ``loader()``'s (cached for ``ttl`` s), one loader per key."""
    return _default(settings).get_or_load(key, loader, ttl, namespace=namespace)


def get_or_load_versioned(
    namespace: str,
    key: str,
    loader: Callable[[], Any],
    ttl: int,
    *,
    settings: Settings | None = None,
) -> Any:
    """``key`` in ``namespace``'s current generation, loaded on a miss (see CacheAside)."""
    return _default(settings).get_or_load_versioned(namespace, key, loader, ttl)
