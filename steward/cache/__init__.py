"""Cache capability: warm Redis from the database, keep it correct from outbox events, report.

Public API:

- :class:`CacheWarmer` / :func:`plan_units`: run ``[[cache.warmers]]`` (refresh or versioned).
- :func:`get_or_load` / :func:`get_or_load_versioned` / :class:`CacheAside`: cache-aside reads
  for applications (every shape: json, hash, zset), one loader per cold key, fills that never
  write back a value an invalidation removed, hit / miss counters per namespace.
- :class:`Invalidator`: apply ``[[cache.invalidations]]`` to the outbox's Redis Streams.
- :func:`read_stats`: per namespace keys, memory, TTLs, hit ratio; server INFO figures.
- :class:`KeySpace`: key layout, generation flips, SCAN + UNLINK deletion.

The Redis client itself is :class:`steward.storage.cache.CacheClient`.
"""

from steward.cache.aside import CacheAside, get_or_load, get_or_load_versioned
from steward.cache.invalidation import InvalidationReport, Invalidator
from steward.cache.keyspace import KeySpace, glob_escape, parse_generation
from steward.cache.rules import Actions, plan_actions
from steward.cache.shapes import SHAPES
from steward.cache.stats import CacheStats, NamespaceStats, hit_ratio, read_stats
from steward.cache.warming import CacheWarmer, UnitReport, WarmerReport, WarmUnit, plan_units
from steward.cache.writer import jittered_ttl

__all__ = [
    "Actions",
    "CacheAside",
    "CacheStats",
    "CacheWarmer",
    "InvalidationReport",
    "Invalidator",
    "KeySpace",
    "NamespaceStats",
    "SHAPES",
    "UnitReport",
    "WarmUnit",
    "WarmerReport",
    "get_or_load",
    "get_or_load_versioned",
    "glob_escape",
    "hit_ratio",
    "jittered_ttl",
    "parse_generation",
    "plan_actions",
    "plan_units",
    "read_stats",
]
