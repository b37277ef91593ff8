"""Cache report: per namespace keys, memory, TTL spread, hits, misses; server-wide INFO figures.

Keys are counted with SCAN (at most ``cache.stats_scan_limit`` per namespace, reported as
``keys_capped``); memory and TTLs come from a sample of the keys seen (``MEMORY USAGE``, ``TTL``),
memory extrapolated to the count. Hits and misses are the cache-aside counters
(``{prefix}stats:{namespace}``); the server's keyspace hits / misses, evictions and used memory
come from ``INFO``.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from steward.cache.keyspace import KeySpace, glob_escape
from steward.settings import Settings
from steward.storage.cache import CacheClient, translate_errors

__all__ = ["CacheStats", "NamespaceStats", "hit_ratio", "read_stats"]

SAMPLE = 200


def hit_ratio(hits: int, misses: int) -> float | None:
    """hits / (hits + misses), None before the first read."""
    return round(hits / (hits + misses), 4) if hits + misses else None


@dataclass
class NamespaceStats:
    """One namespace: where its keys are, how many, how big, how long they live, how used."""

    namespace: str
    mode: str
    generation: int | None = None
    keys: int = 0
    keys_capped: bool = False
    memory_bytes: int = 0
    ttl_min: int | None = None
    ttl_median: float | None = None
    ttl_max: int | None = None
    no_ttl: int = 0
    hits: int = 0
    misses: int = 0

    @property
    def hit_ratio(self) -> float | None:
        return hit_ratio(self.hits, self.misses)


@dataclass
class CacheStats:
    """The whole report."""

    namespaces: list[NamespaceStats] = field(default_factory=list)
    server: dict[str, Any] = field(default_factory=dict)

    @property
    def hits(self) -> int:
        return sum(n.hits for n in self.namespaces)

    @property
    def misses(self) -> int:
        return sum(n.misses for n in self.namespaces)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for item, ns in zip(data["namespaces"], self.namespaces, strict=True):
            item["hit_ratio"] = ns.hit_ratio
        data["hits"], data["misses"] = self.hits, self.misses
        data["hit_ratio"] = hit_ratio(self.hits, self.misses)
        return data


def read_stats(settings: Settings, cache: CacheClient | None = None) -> CacheStats:
    """Measure every namespace the warmers name or that has cache-aside counters."""
    client = cache or CacheClient(settings)
    keyspace = KeySpace(client.redis, client.prefix)
    with translate_errors(f"reading cache statistics from {client.display_url}"):
        report = CacheStats()
        for namespace, mode in _namespaces(settings, keyspace).items():
            report.namespaces.append(
                _measure(keyspace, namespace, mode, settings.cache.stats_scan_limit)
            )
        report.server = _server(client)
    return report


def _namespaces(settings: Settings, keyspace: KeySpace) -> dict[str, str]:
    found: dict[str, str] = {w.effective_namespace: w.mode for w in settings.cache.warmers}
    stats_prefix = keyspace.stats_key("")
    for key in keyspace.scan(glob_escape(stats_prefix) + "*"):
        found.setdefault(key.decode()[len(stats_prefix) :], "cache-aside")
    return found


def _measure(keyspace: KeySpace, namespace: str, mode: str, limit: int) -> NamespaceStats:
    stats = NamespaceStats(namespace, mode)
    if mode == "versioned":
        stats.generation = keyspace.current_generation(namespace)
        if stats.generation is None:
            _counters(keyspace, stats)
            return stats
        match = glob_escape(keyspace.generation_prefix(namespace, stats.generation)) + "*"
    else:
        match = glob_escape(keyspace.key(namespace) + ":") + "*"
    sample: list[bytes] = []
    for key in keyspace.scan(match, limit=limit):
        stats.keys += 1
        if len(sample) < SAMPLE:
            sample.append(key)
    stats.keys_capped = stats.keys >= limit
    _sample(keyspace, stats, sample)
    _counters(keyspace, stats)
    return stats


def _sample(keyspace: KeySpace, stats: NamespaceStats, keys: list[bytes]) -> None:
    if not keys:
        return
    pipe = keyspace.client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key)
        pipe.ttl(key)
    replies = pipe.execute()
    sizes = [int(n or 0) for n in replies[0::2]]
    ttls = [int(t) for t in replies[1::2] if int(t) >= 0]
    stats.no_ttl = sum(1 for t in replies[1::2] if int(t) == -1)
    stats.memory_bytes = round(statistics.fmean(sizes) * stats.keys)
    if ttls:
        stats.ttl_min, stats.ttl_max = min(ttls), max(ttls)
        stats.ttl_median = statistics.median(ttls)


def _counters(keyspace: KeySpace, stats: NamespaceStats) -> None:
    raw = keyspace.client.hgetall(keyspace.stats_key(stats.namespace))
    stats.hits = int(raw.get(b"hits", 0))
    stats.misses = int(raw.get(b"misses", 0))


def _server(client: CacheClient) -> dict[str, Any]:
    info_stats = client.redis.info("stats")
    memory = client.redis.info("memory")
    hits, misses = (
        int(info_stats.get("keyspace_hits", 0)),
        int(info_stats.get("keyspace_misses", 0)),
    )
    return {
        "keyspace_hits": hits,
        "keyspace_misses": misses,
        "keyspace_hit_ratio": hit_ratio(hits, misses),
        "evicted_keys": int(info_stats.get("evicted_keys", 0)),
        "expired_keys": int(info_stats.get("expired_keys", 0)),
        "used_memory": int(memory.get("used_memory", 0)),
        "used_memory_human": memory.get("used_memory_human", ""),
        "maxmemory_policy": memory.get("maxmemory_policy", ""),
        "db_keys": int(client.redis.dbsize()),
    }
