"""Cache-aside for applications: ``get_or_load(key, loader, ttl)`` with stampede protection.

On a miss, one caller takes a short lease (``SET NX PX cache.lock_ms`` on ``{prefix}lock:{key}``)
and runs the loader; the others poll the key until it appears (or the lease goes away, then one
of them takes it). So 50 concurrent calls on a cold key run the loader once.

The loader's value is written only if the lease still holds the caller's token (one script,
:data:`steward.cache.shapes.FILL`). The invalidator deletes a key's lease with the key, so a
value loaded before an invalidation is never written back after it; a loader slower than
``lock_ms`` loses its lease too and its value is returned uncached.

Every shape the warmers write has a read (``shape="json" | "hash" | "zset"``, see
:mod:`steward.cache.shapes`); versioned reads take the generation pointer and the key in one
script, so a generation flip never makes a read miss.

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
from dataclasses import dataclass
from typing import Any

import redis

from steward.cache.keyspace import KeySpace
from steward.cache.shapes import FILL, SHAPES, Shape, decode, encode, read_plain, wrong_type
from steward.errors import ConfigError
from steward.settings import Settings, get_settings
from steward.storage.cache import CacheClient

__all__ = ["CacheAside", "get_or_load", "get_or_load_versioned"]

# Deletes the lease only when it still holds our token (it may have expired and moved on).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_OFFLINE = (redis.ConnectionError, redis.TimeoutError)


@dataclass(frozen=True)
class _Target:
    """Where a miss is filled: the key, its lease, and (versioned) the generation read."""

    full: str
    lease: str
    shape: Shape
    current_key: str = ""
    generation: str = ""


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
        self._fill = client.register_script(FILL)
        self._counts: dict[str, list[int]] = {}
        self._pending = 0
        self._flushed_at = time.monotonic()
        self._lock = threading.Lock()

    def get_or_load(
        self,
        key: str,
        loader: Callable[[], Any],
        ttl: int,
        *,
        namespace: str | None = None,
        shape: Shape = "json",
    ) -> Any:
        """The value of ``key`` (under the prefix), loading and caching it on a miss.

        ``shape``: ``json`` (any JSON value), ``hash`` (``{field: text}``; the loader returns a
        mapping) or ``zset`` (``[(member, score)]`` highest first; the loader returns
        member -> score).
        """
        _check_shape(shape)
        full = self.keyspace.key(key)
        space = namespace or key.split(":", 1)[0]
        try:
            value = self._read(full, shape)
        except _OFFLINE:
            return loader()
        self._count(space, hit=value is not None)
        if value is not None:
            return value
        return self._load(_Target(full, self.keyspace.lease_key(key), shape), loader, ttl)

    def get_or_load_versioned(
        self,
        namespace: str,
        key: str,
        loader: Callable[[], Any],
        ttl: int,
        *,
        shape: Shape = "json",
    ) -> Any:
        """Like :meth:`get_or_load`, for ``key`` in ``namespace``'s current generation.

        The pointer and the key are read in one step: a generation flip never makes it miss.
        """
        _check_shape(shape)
        try:
            generation, raw = self.keyspace.read_versioned(namespace, key, shape)
        except _OFFLINE:
            return loader()
        except redis.ResponseError as exc:
            full = self.keyspace.resolve(key, namespace) or key
            raise self._refused(exc, full, shape) from None
        value = decode(shape, raw)
        self._count(namespace, hit=value is not None)
        if value is not None:
            return value
        if generation is None:  # nothing warmed yet: there is no generation to fill
            return loader()
        target = _Target(
            self.keyspace.generation_prefix(namespace, generation) + key,
            self.keyspace.lease_key(key, namespace),
            shape,
            self.keyspace.current_key(namespace),
            f"v{generation}",
        )
        return self._load(target, loader, ttl)

    def _read(self, full: str, shape: Shape) -> Any:
        try:
            return decode(shape, read_plain(self.client, full, shape))
        except redis.ResponseError as exc:
            raise self._refused(exc, full, shape) from None

    def _refused(self, exc: redis.ResponseError, full: str, shape: Shape) -> Exception:
        return wrong_type(self.client, full, shape) if "WRONGTYPE" in str(exc) else exc

    def _load(self, target: _Target, loader: Callable[[], Any], ttl: int) -> Any:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + 2 * self.lock_ms / 1000
        try:
            while time.monotonic() < deadline:
                if self.client.set(target.lease, token, nx=True, px=self.lock_ms):
                    return self._load_leased(target, token, loader, ttl)
                value = self._wait(target)
                if value is not None:
                    return value
        except _OFFLINE:
            pass
        return loader()  # lease holder stuck or Redis gone: serve the caller anyway

    def _load_leased(self, target: _Target, token: str, loader: Callable[[], Any], ttl: int) -> Any:
        value = self._read(target.full, target.shape)  # filled while we took the lease?
        if value is not None:
            self._release_quietly(target, token)
            return value
        try:
            payload, as_read = encode(target.shape, loader(), target.full)
        except BaseException:
            self._release_quietly(target, token)
            raise
        try:  # the fill also releases the lease; Redis gone now: the value, uncached
            if payload:  # (an empty hash / sorted set cannot be stored)
                self._fill(
                    keys=[target.lease, target.full, target.current_key or target.lease],
                    args=[token, ttl or 0, target.shape, target.generation, *payload],
                )
            else:
                self._release(keys=[target.lease], args=[token])
        except _OFFLINE:
            pass
        return as_read

    def _release_quietly(self, target: _Target, token: str) -> None:
        try:
            self._release(keys=[target.lease], args=[token])
        except _OFFLINE:
            pass  # it expires after lock_ms

    def _wait(self, target: _Target) -> Any:
        """Poll until the key is filled (its value) or the lease is gone (None)."""
        while True:
            time.sleep(self.poll_seconds)
            locked = self.client.exists(target.lease)
            value = self._read(target.full, target.shape)
            if value is not None or not locked:
                return value

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


def _check_shape(shape: str) -> None:
    if shape not in SHAPES:
        raise ConfigError(f"cache-aside: shape={shape!r}; accepted: {', '.join(SHAPES)}")


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
    shape: Shape = "json",
    settings: Settings | None = None,
) -> Any:
    """``key``'s cached value, or ``loader()``'s (cached for ``ttl`` s), one loader per key."""
    return _default(settings).get_or_load(key, loader, ttl, namespace=namespace, shape=shape)


def get_or_load_versioned(
    namespace: str,
    key: str,
    loader: Callable[[], Any],
    ttl: int,
    *,
    shape: Shape = "json",
    settings: Settings | None = None,
) -> Any:
    """``key`` in ``namespace``'s current generation, loaded on a miss (see CacheAside)."""
    return _default(settings).get_or_load_versioned(namespace, key, loader, ttl, shape=shape)
